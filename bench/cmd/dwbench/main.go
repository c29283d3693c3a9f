// Command dwbench is a whole-server DICOMweb benchmark: it generates
// synthetic DICOM Part 10 files, then runs the same scenarios, with the same
// Go HTTP client, against Sanping and Orthanc (each on loopback, one after the
// other), and reports medians and Sanping/Orthanc ratios as a markdown table.
//
// Every response is checked (status 2xx plus a scenario-specific check of
// the body); any error is counted, reported, and makes dwbench exit 1, so a
// broken server never looks fast.
//
// Usage (see bench/run.sh, which starts both servers):
//
//	dwbench -sanping http://127.0.0.1:18080 -orthanc http://127.0.0.1:18042 \
//	    -user admin -password PW -out results.md
//
// Pass -sanping "" or -orthanc "" to benchmark one server alone.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Scenario names, in run order.
const (
	scStowSmall = "stow-small"
	scStowCT    = "stow-ct"
	scMetadata  = "series-metadata"
	scQIDO      = "qido-instances"
	scFrame     = "wado-frame"
	// Rendering (render.go).
	scRenderCRPNG  = "rendered-cr-png"
	scRenderCRJPEG = "rendered-cr-jpeg-1024"
	scRenderCTPNG  = "rendered-ct-png"
)

var allScenarios = []string{scStowSmall, scStowCT, scMetadata, scQIDO, scFrame, scRenderCRPNG, scRenderCRJPEG, scRenderCTPNG}

type config struct {
	sanping, orthanc   string
	user, password     string
	out                string
	scenarios          []string
	workers            int
	smallN, ctN        int
	seriesN            int
	latencyN, warmup   int
	frameN             int
	frameMax           time.Duration
	wait               time.Duration
	pause              time.Duration
	tmp                string
	keep               bool
	first              string
	frameAccept        string
	maxErrors          int
	reqTimeout         time.Duration
	ctRows, ctCols     int
	smallRows, seriesR int
	sanpingPID         int
	orthancPID         int
	crRows, crCols     int
	renderN            int
	renderMax          time.Duration
	renderWorkers      int
	renderCTN          int
	renderCTMax        time.Duration
	filesOnly          bool
}

type server struct {
	name    string // "Sanping" or "Orthanc"
	base    string // http://host:port
	root    string // base + "/dicom-web"
	version string
	pid     int // for CPU accounting from /proc; 0 = unknown
}

// instance is one generated file, held in memory.
type instance struct {
	study, series, sop string
	data               []byte
}

type dataset struct {
	name      string
	rows      int
	cols      int
	instances []instance
}

// measure is one scenario's result on one server.
type measure struct {
	requests  int
	errs      int
	firstErrs []string
	wall      time.Duration
	lats      []time.Duration
	bytes     int64
	skipped   string
	serverCPU time.Duration // -1 when unknown
	clientCPU time.Duration
}

func (m *measure) rate() float64 {
	if m.wall <= 0 {
		return 0
	}
	return float64(m.requests) / m.wall.Seconds()
}

func (m *measure) pct(p float64) time.Duration {
	if len(m.lats) == 0 {
		return 0
	}
	s := slices.Clone(m.lats)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

type row struct {
	scenario   string
	what       string
	throughput bool    // true: requests/s, higher is better; false: median latency
	target     float64 // Sanping/Orthanc advantage wanted; 0 = informational
	// maxMedian, when > 0, is an absolute target instead: Sanping's median
	// latency must be below it (met whether or not Orthanc ran).
	maxMedian time.Duration
	res       map[string]*measure
}

type bench struct {
	cfg     config
	client  *http.Client
	servers []*server
	rows    []*row
	errors  int
	dir     string // where the generated files go
}

func main() {
	var cfg config
	var scen string
	flag.StringVar(&cfg.sanping, "sanping", "http://127.0.0.1:18080", `Sanping base URL ("" to skip)`)
	flag.StringVar(&cfg.orthanc, "orthanc", "http://127.0.0.1:18042", `Orthanc base URL ("" to skip)`)
	flag.StringVar(&cfg.user, "user", "admin", "HTTP Basic user (both servers)")
	flag.StringVar(&cfg.password, "password", os.Getenv("BENCH_PASSWORD"), "HTTP Basic password (both servers; default $BENCH_PASSWORD)")
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", "))
	flag.IntVar(&cfg.workers, "workers", 8, "concurrent workers for stow-* and wado-frame")
	flag.IntVar(&cfg.smallN, "small-n", 2000, "stow-small: number of MR instances")
	flag.IntVar(&cfg.smallRows, "small-size", 180, "stow-small: rows = columns of the MR images")
	flag.IntVar(&cfg.ctN, "ct-n", 300, "stow-ct: number of CT slices")
	flag.IntVar(&cfg.ctRows, "ct-rows", 724, "stow-ct: rows of the CT slices")
	flag.IntVar(&cfg.ctCols, "ct-cols", 724, "stow-ct: columns of the CT slices")
	flag.IntVar(&cfg.seriesN, "series-n", 300, "series-metadata/qido-instances/wado-frame: slices in the CT series")
	flag.IntVar(&cfg.seriesR, "series-size", 512, "rows = columns of that CT series")
	flag.IntVar(&cfg.latencyN, "latency-n", 50, "series-metadata/qido-instances: timed sequential GETs")
	flag.IntVar(&cfg.warmup, "warmup", 2, "series-metadata/qido-instances: untimed GETs before the timed ones")
	flag.IntVar(&cfg.frameN, "frame-n", 2000, "wado-frame: number of frame requests")
	flag.DurationVar(&cfg.frameMax, "frame-max", 60*time.Second, "wado-frame: stop early after this long")
	flag.DurationVar(&cfg.wait, "wait", 90*time.Second, "wait this long for each server to answer before starting")
	flag.DurationVar(&cfg.pause, "pause", 2*time.Second, "idle pause (after sync(2)) before each server's run")
	flag.StringVar(&cfg.tmp, "tmp", "", "directory for the generated files (default: a new temp dir, removed at exit)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the generated files (and the first rendered image of each rendered-* run, in the same directory)")
	flag.StringVar(&cfg.first, "first", "sanping", "which server runs first in each scenario: sanping or orthanc")
	flag.StringVar(&cfg.frameAccept, "frame-accept", `multipart/related; type="application/octet-stream"; transfer-syntax=*`, "Accept header for wado-frame")
	flag.IntVar(&cfg.maxErrors, "max-errors", 20, "abort a scenario run on one server after this many errors")
	flag.DurationVar(&cfg.reqTimeout, "timeout", 120*time.Second, "per-request timeout")
	flag.IntVar(&cfg.sanpingPID, "sanping-pid", 0, "Sanping's process id, to report its CPU time per run (optional)")
	flag.IntVar(&cfg.orthancPID, "orthanc-pid", 0, "Orthanc's process id, to report its CPU time per run (optional)")
	flag.IntVar(&cfg.crRows, "cr-rows", 1760, "rendered-cr-*: rows of the CR image")
	flag.IntVar(&cfg.crCols, "cr-cols", 2140, "rendered-cr-*: columns of the CR image")
	flag.IntVar(&cfg.renderN, "render-n", 30, "rendered-cr-*: timed requests per run")
	flag.DurationVar(&cfg.renderMax, "render-max", 20*time.Second, "rendered-cr-*: stop a run early after this long")
	flag.IntVar(&cfg.renderWorkers, "render-workers", 2, "rendered-cr-png: workers of its concurrent run (the other run is sequential)")
	flag.IntVar(&cfg.renderCTN, "render-ct-n", 2000, "rendered-ct-png: number of requests (-workers workers)")
	flag.DurationVar(&cfg.renderCTMax, "render-ct-max", 30*time.Second, "rendered-ct-png: stop early after this long")
	flag.BoolVar(&cfg.filesOnly, "files-only", false, "only write the files of the selected stow-small and stow-ct scenarios to -tmp (DIR/small, DIR/ct), then exit; no server is contacted")
	flag.Parse()

	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			fatalf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		cfg.scenarios = append(cfg.scenarios, s)
	}
	if len(cfg.scenarios) == 0 {
		fatalf("no scenarios selected")
	}
	if cfg.filesOnly {
		os.Exit(writeFiles(cfg))
	}
	if cfg.sanping == "" && cfg.orthanc == "" {
		fatalf("both -sanping and -orthanc are empty")
	}
	if cfg.workers < 1 || cfg.latencyN < 1 || cfg.frameN < 1 {
		fatalf("-workers, -latency-n and -frame-n must be >= 1")
	}
	if cfg.renderN < 1 || cfg.renderWorkers < 1 || cfg.renderCTN < 1 || cfg.crRows < 1 || cfg.crCols < 1 || cfg.crRows > 65535 || cfg.crCols > 65535 {
		fatalf("-render-n, -render-workers, -render-ct-n must be >= 1; -cr-rows, -cr-cols in 1..65535")
	}

	b := &bench{cfg: cfg}
	b.client = &http.Client{
		Timeout: cfg.reqTimeout,
		Transport: &http.Transport{
			Proxy:               nil, // loopback only, never a proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4 * cfg.workers,
			MaxIdleConnsPerHost: 2 * cfg.workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // identical, uncompressed responses from both servers
		},
	}
	sp := &server{name: "Sanping", base: strings.TrimRight(cfg.sanping, "/"), pid: cfg.sanpingPID}
	or := &server{name: "Orthanc", base: strings.TrimRight(cfg.orthanc, "/"), pid: cfg.orthancPID}
	order := []*server{sp, or}
	if cfg.first == "orthanc" {
		order = []*server{or, sp}
	} else if cfg.first != "sanping" {
		fatalf("-first must be sanping or orthanc")
	}
	for _, s := range order {
		if s.base == "" {
			continue
		}
		if err := checkLoopback(s.base); err != nil {
			fatalf("%s: %v", s.name, err)
		}
		s.root = s.base + "/dicom-web"
		b.servers = append(b.servers, s)
	}
	os.Exit(b.run())
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "dwbench: "+format+"\n", a...)
	os.Exit(2)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// checkLoopback refuses anything but a loopback host: this benchmark is
// only meant to run both servers on the local machine.
func checkLoopback(base string) error {
	req, err := http.NewRequest("GET", base, nil)
	if err != nil {
		return err
	}
	host := req.URL.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", base)
	}
	return nil
}

func (b *bench) run() int {
	for _, s := range b.servers {
		if err := b.waitReady(s); err != nil {
			logf("FATAL: %s not ready: %v", s.name, err)
			return 1
		}
		logf("%s ready at %s (%s)", s.name, s.base, s.version)
	}

	dir := b.cfg.tmp
	if dir == "" {
		d, err := os.MkdirTemp("", "dwbench-data-")
		if err != nil {
			logf("FATAL: %v", err)
			return 1
		}
		dir = d
		if !b.cfg.keep {
			defer os.RemoveAll(d)
		}
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	b.dir = dir
	root := uidRoot(rnd[:])
	logf("UID root for this run: %s; data in %s", root, dir)

	want := func(s string) bool { return slices.Contains(b.cfg.scenarios, s) }
	var small, ct, series *dataset
	var err error
	if want(scStowSmall) {
		if small, err = generate(dir, "small", root+".1", "MR", b.cfg.smallN, 100, b.cfg.smallRows, b.cfg.smallRows, 1); err != nil {
			logf("FATAL: %v", err)
			return 1
		}
	}
	if want(scStowCT) {
		if ct, err = generate(dir, "ct", root+".2", "CT", b.cfg.ctN, b.cfg.ctN, b.cfg.ctRows, b.cfg.ctCols, 2); err != nil {
			logf("FATAL: %v", err)
			return 1
		}
	}
	needSeries := want(scMetadata) || want(scQIDO) || want(scFrame) || want(scRenderCTPNG)
	if needSeries {
		if series, err = generate(dir, "series", root+".3", "CT", b.cfg.seriesN, b.cfg.seriesN, b.cfg.seriesR, b.cfg.seriesR, 3); err != nil {
			logf("FATAL: %v", err)
			return 1
		}
	}
	var cr *dataset
	if want(scRenderCRPNG) || want(scRenderCRJPEG) {
		if cr, err = generateCR(dir, root+".4", b.cfg.crRows, b.cfg.crCols, 4); err != nil {
			logf("FATAL: %v", err)
			return 1
		}
	}

	if small != nil {
		b.rows = append(b.rows, b.stowRow(scStowSmall, small, 3))
	}
	if ct != nil {
		b.rows = append(b.rows, b.stowRow(scStowCT, ct, 1.2))
	}
	var seriesOK map[string]bool
	if series != nil {
		setup := b.stowRow("stow-ct512 (setup)", series, 0)
		b.rows = append(b.rows, setup)
		ok := storedOK(setup, series)
		seriesOK = ok
		if want(scMetadata) {
			b.rows = append(b.rows, b.latencyRow(scMetadata, series, ok))
		}
		if want(scQIDO) {
			b.rows = append(b.rows, b.latencyRow(scQIDO, series, ok))
		}
		if want(scFrame) {
			b.rows = append(b.rows, b.frameRow(series, ok))
		}
	}
	if cr != nil {
		setup := b.stowRow("stow-cr (setup)", cr, 0)
		b.rows = append(b.rows, setup)
		ok := storedOK(setup, cr)
		if want(scRenderCRPNG) {
			b.rows = append(b.rows, b.renderCRPNGRows(cr, ok)...)
		}
		if want(scRenderCRJPEG) {
			b.rows = append(b.rows, b.renderCRJPEGRow(cr, ok))
		}
	}
	if series != nil && want(scRenderCTPNG) {
		b.rows = append(b.rows, b.renderCTPNGRow(series, seriesOK))
	}

	report := b.report(root)
	fmt.Print(report)
	if b.cfg.out != "" {
		if err := os.WriteFile(b.cfg.out, []byte(report), 0o644); err != nil {
			logf("FATAL: writing %s: %v", b.cfg.out, err)
			return 1
		}
		logf("wrote %s", b.cfg.out)
	}
	if b.errors > 0 {
		logf("FAIL: %d request(s) failed; figures above are not valid", b.errors)
		return 1
	}
	return 0
}

// writeFiles is -files-only: the stow-small and stow-ct files, under a new UID root, for
// benchmarks that send them with other tools (bench/station.sh).
func writeFiles(cfg config) int {
	if cfg.tmp == "" {
		fatalf("-files-only needs -tmp DIR")
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	root := uidRoot(rnd[:])
	for _, s := range cfg.scenarios {
		var err error
		switch s {
		case scStowSmall:
			_, err = generate(cfg.tmp, "small", root+".1", "MR", cfg.smallN, 100, cfg.smallRows, cfg.smallRows, 1)
		case scStowCT:
			_, err = generate(cfg.tmp, "ct", root+".2", "CT", cfg.ctN, cfg.ctN, cfg.ctRows, cfg.ctCols, 2)
		default:
			fatalf("-files-only writes the files of %s and %s only, not %s", scStowSmall, scStowCT, s)
		}
		if err != nil {
			logf("FATAL: %v", err)
			return 1
		}
	}
	logf("UID root %s; files in %s", root, cfg.tmp)
	return 0
}

// generate makes n slices of rows x cols, perSeries per series (one study
// per series), writes them to dir/name/ and returns them in memory.
func generate(dir, name, root, modality string, n, perSeries, rows, cols int, seed uint64) (*dataset, error) {
	t0 := time.Now()
	sub := filepath.Join(dir, name)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return nil, err
	}
	ds := &dataset{name: name, rows: rows, cols: cols, instances: make([]instance, n)}
	var total int64
	for i := 0; i < n; i++ {
		k := i/perSeries + 1
		spec := sliceSpec{
			modality:     modality,
			patientName:  fmt.Sprintf("DWBENCH^%s%03d", strings.ToUpper(name), k),
			patientID:    fmt.Sprintf("DWB-%s-%03d", name, k),
			studyUID:     fmt.Sprintf("%s.1.%d", root, k),
			seriesUID:    fmt.Sprintf("%s.2.%d", root, k),
			frameOfRef:   fmt.Sprintf("%s.4.%d", root, k),
			sopUID:       fmt.Sprintf("%s.3.%d.%d", root, k, i%perSeries+1),
			studyID:      fmt.Sprint(k),
			seriesNumber: 1,
			seriesDesc:   fmt.Sprintf("dwbench %s %dx%d", name, rows, cols),
			accession:    fmt.Sprintf("DWB%s%d", strings.ToUpper(name[:1]), k),
			instanceNum:  i%perSeries + 1,
			rows:         rows,
			cols:         cols,
			seed:         seed*1000 + uint64(k),
		}
		data := makeSlice(spec)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("%05d.dcm", i+1)), data, 0o644); err != nil {
			return nil, err
		}
		ds.instances[i] = instance{study: spec.studyUID, series: spec.seriesUID, sop: spec.sopUID, data: data}
		total += int64(len(data))
	}
	logf("generated %s: %d x %s %dx%d (%.1f KB each, %.0f MB) in %v",
		name, n, modality, rows, cols, float64(total)/float64(n)/1024, float64(total)/1e6, time.Since(t0).Round(time.Millisecond))
	return ds, nil
}

// --- HTTP helpers ---

type reply struct {
	status int
	ctype  string
	body   []byte
}

// do sends one request and reads the whole body; the duration covers
// sending the request through reading the last body byte.
func (b *bench) do(method, url string, hdr map[string]string, bodyLen int64, bodyReader func() io.Reader) (reply, time.Duration, error) {
	var rdr io.Reader
	if bodyReader != nil {
		rdr = bodyReader()
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rdr)
	if err != nil {
		return reply{}, 0, err
	}
	if bodyReader != nil {
		req.ContentLength = bodyLen
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bodyReader()), nil }
	}
	req.SetBasicAuth(b.cfg.user, b.cfg.password)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	t0 := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return reply{}, time.Since(t0), err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	r := reply{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: data}
	if err != nil {
		return r, d, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return r, d, fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, snippet(data))
	}
	return r, d, nil
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func (b *bench) waitReady(s *server) error {
	deadline := time.Now().Add(b.cfg.wait)
	path := "/healthz"
	if s.name == "Orthanc" {
		path = "/system"
	}
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		r, _, err := b.do("GET", s.base+path, nil, 0, nil)
		if err == nil {
			s.version = b.versionOf(s, r.body)
			return nil
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("no 2xx from %s%s within %v: %v", s.base, path, b.cfg.wait, last)
}

func (b *bench) versionOf(s *server, body []byte) string {
	if s.name != "Orthanc" {
		var v struct{ Version string }
		if json.Unmarshal(body, &v) == nil && v.Version != "" {
			return "Sanping " + v.Version
		}
		return "Sanping (healthz: " + snippet(body) + ")"
	}
	var sys struct{ Version string }
	_ = json.Unmarshal(body, &sys)
	out := "Orthanc " + sys.Version
	if r, _, err := b.do("GET", s.base+"/plugins/dicom-web", nil, 0, nil); err == nil {
		var p struct{ Version string }
		if json.Unmarshal(r.body, &p) == nil && p.Version != "" {
			out += ", DICOMweb plugin " + p.Version
		}
	} else {
		out += ", DICOMweb plugin NOT LOADED"
	}
	return out
}

// settle flushes dirty pages (so one server's writes are not paid for by
// the next one's run) and idles a moment.
func (b *bench) settle() {
	syscall.Sync()
	time.Sleep(b.cfg.pause)
}

// pool runs fn(i) for i in [0,n) on workers goroutines, stopping early
// after maxDur (if > 0) or after maxErrors errors.
func (b *bench) pool(s *server, n, workers int, maxDur time.Duration, fn func(i int) (time.Duration, int64, error)) *measure {
	m := &measure{}
	srv0, cli0 := procCPU(s.pid), selfCPU()
	defer func() {
		m.clientCPU = selfCPU() - cli0
		m.serverCPU = -1
		if srv1 := procCPU(s.pid); srv0 >= 0 && srv1 >= 0 {
			m.serverCPU = srv1 - srv0
		}
	}()
	var next, errs atomic.Int64
	var mu sync.Mutex
	start := time.Now()
	var deadline time.Time
	if maxDur > 0 {
		deadline = start.Add(maxDur)
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats := make([]time.Duration, 0, n/workers+1)
			var done int
			var nbytes int64
			for {
				i := int(next.Add(1) - 1)
				if i >= n || errs.Load() >= int64(b.cfg.maxErrors) || (!deadline.IsZero() && time.Now().After(deadline)) {
					break
				}
				d, nb, err := fn(i)
				done++
				if err != nil {
					errs.Add(1)
					mu.Lock()
					m.errs++
					if len(m.firstErrs) < 5 {
						m.firstErrs = append(m.firstErrs, err.Error())
					}
					mu.Unlock()
					continue
				}
				lats = append(lats, d)
				nbytes += nb
			}
			mu.Lock()
			m.requests += done
			m.lats = append(m.lats, lats...)
			m.bytes += nbytes
			mu.Unlock()
		}()
	}
	wg.Wait()
	m.wall = time.Since(start)
	return m
}

func (b *bench) record(r *row, s *server, m *measure) {
	r.res[s.name] = m
	b.errors += m.errs
	if m.errs > 0 {
		logf("ERROR %s on %s: %d error(s) in %d request(s):", r.scenario, s.name, m.errs, m.requests)
		for _, e := range m.firstErrs {
			logf("    %s", e)
		}
	}
	cpu := fmt.Sprintf("client CPU %.2fs", m.clientCPU.Seconds())
	if m.serverCPU >= 0 {
		cpu = fmt.Sprintf("server CPU %.2fs, %s", m.serverCPU.Seconds(), cpu)
	}
	if r.throughput {
		logf("%-18s %-8s %4d req, %d err, %7.1f req/s, p50 %v, p90 %v, wall %v; %s",
			r.scenario, s.name, m.requests, m.errs, m.rate(), ms(m.pct(.5)), ms(m.pct(.9)), m.wall.Round(time.Millisecond), cpu)
	} else {
		logf("%-18s %-8s %4d req, %d err, p50 %v, p90 %v, min %v, max %v; %s",
			r.scenario, s.name, m.requests, m.errs, ms(m.pct(.5)), ms(m.pct(.9)), ms(m.pct(0)), ms(m.pct(1)), cpu)
	}
}

// procCPU returns the user+system CPU time of process pid from
// /proc/pid/stat, or -1 if unknown.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return -1
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return -1
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return -1
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// selfCPU is dwbench's own user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

// --- STOW-RS ---

func (b *bench) stowRow(name string, ds *dataset, target float64) *row {
	r := &row{scenario: name, throughput: true, target: target, res: map[string]*measure{},
		what: fmt.Sprintf("STOW-RS, %d x %.0f KB %s, 1 instance/request, %d workers; instances/s",
			len(ds.instances), float64(len(ds.instances[0].data))/1024, ds.name, b.cfg.workers)}
	for _, s := range b.servers {
		b.settle()
		logf("%s on %s ...", name, s.name)
		m := b.pool(s, len(ds.instances), b.cfg.workers, 0, func(i int) (time.Duration, int64, error) {
			return b.stowOne(s, &ds.instances[i])
		})
		b.record(r, s, m)
	}
	return r
}

// storedOK tells, per server, whether a setup STOW row stored all of ds.
func storedOK(setup *row, ds *dataset) map[string]bool {
	ok := map[string]bool{}
	for name, m := range setup.res {
		ok[name] = m.errs == 0 && m.skipped == "" && m.requests == len(ds.instances)
	}
	return ok
}

const boundary = "dwbench-7c1f0e2b9a4d4b0c8e6f"

func (b *bench) stowOne(s *server, in *instance) (time.Duration, int64, error) {
	head := []byte("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n")
	tail := []byte("\r\n--" + boundary + "--\r\n")
	size := len(head) + len(in.data) + len(tail)
	mk := func() io.Reader {
		return io.MultiReader(bytes.NewReader(head), bytes.NewReader(in.data), bytes.NewReader(tail))
	}
	hdr := map[string]string{
		"Content-Type": `multipart/related; type="application/dicom"; boundary=` + boundary,
		"Accept":       "application/dicom+json",
	}
	r, d, err := b.do("POST", s.root+"/studies", hdr, int64(size), mk)
	if err != nil {
		return d, 0, err
	}
	if err := checkStow(r.body, in.sop); err != nil {
		return d, 0, fmt.Errorf("STOW %s: %v (HTTP %d, %s)", in.sop, err, r.status, snippet(r.body))
	}
	return d, int64(len(in.data)), nil
}

// dicomJSON is one PS3.18 DICOM JSON data set.
type dicomJSON map[string]struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value"`
}

func (d dicomJSON) str(tag string) string {
	a, ok := d[tag]
	if !ok || len(a.Value) == 0 {
		return ""
	}
	var s string
	_ = json.Unmarshal(a.Value[0], &s)
	return s
}

// checkStow wants a ReferencedSOPSequence (0008,1199) naming sop and no
// FailedSOPSequence (0008,1198) item.
func checkStow(body []byte, sop string) error {
	var resp dicomJSON
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("response is not a DICOM JSON object: %v", err)
	}
	if f, ok := resp["00081198"]; ok && len(f.Value) > 0 {
		return errors.New("FailedSOPSequence present")
	}
	ref, ok := resp["00081199"]
	if !ok || len(ref.Value) != 1 {
		return errors.New("no ReferencedSOPSequence with one item")
	}
	var item dicomJSON
	if err := json.Unmarshal(ref.Value[0], &item); err != nil {
		return fmt.Errorf("ReferencedSOPSequence item: %v", err)
	}
	if got := item.str("00081155"); got != sop {
		return fmt.Errorf("ReferencedSOPInstanceUID %q, want %q", got, sop)
	}
	return nil
}

// --- sequential GETs: series metadata and QIDO instances ---

func (b *bench) latencyRow(name string, ds *dataset, stored map[string]bool) *row {
	in := ds.instances[0]
	path := fmt.Sprintf("/studies/%s/series/%s/metadata", in.study, in.series)
	what := fmt.Sprintf("WADO-RS series metadata of %d-slice CT, %d sequential GETs; median latency", len(ds.instances), b.cfg.latencyN)
	if name == scQIDO {
		path = fmt.Sprintf("/studies/%s/series/%s/instances", in.study, in.series)
		what = fmt.Sprintf("QIDO-RS instances of %d-slice CT series, %d sequential GETs; median latency", len(ds.instances), b.cfg.latencyN)
	}
	want := make(map[string]bool, len(ds.instances))
	for _, x := range ds.instances {
		want[x.sop] = true
	}
	r := &row{scenario: name, what: what, throughput: false, target: 10, res: map[string]*measure{}}
	hdr := map[string]string{"Accept": "application/dicom+json"}
	for _, s := range b.servers {
		if !stored[s.name] {
			r.res[s.name] = &measure{skipped: "series not stored"}
			continue
		}
		b.settle()
		logf("%s on %s ...", name, s.name)
		for w := 0; w < b.cfg.warmup; w++ {
			if _, _, err := b.do("GET", s.root+path, hdr, 0, nil); err != nil {
				logf("warm-up %s on %s: %v", name, s.name, err)
			}
		}
		m := b.pool(s, b.cfg.latencyN, 1, 0, func(int) (time.Duration, int64, error) {
			rep, d, err := b.do("GET", s.root+path, hdr, 0, nil)
			if err != nil {
				return d, 0, err
			}
			if err := checkArray(rep.body, want); err != nil {
				return d, 0, fmt.Errorf("%s: %v", name, err)
			}
			return d, int64(len(rep.body)), nil
		})
		b.record(r, s, m)
	}
	return r
}

// checkArray wants a JSON array with exactly one data set per instance of
// want, each naming its SOPInstanceUID (0008,0018).
func checkArray(body []byte, want map[string]bool) error {
	var arr []dicomJSON
	if err := json.Unmarshal(body, &arr); err != nil {
		return fmt.Errorf("not a DICOM JSON array: %v (%s)", err, snippet(body))
	}
	if len(arr) != len(want) {
		return fmt.Errorf("%d data sets, want %d", len(arr), len(want))
	}
	seen := make(map[string]bool, len(arr))
	for _, ds := range arr {
		sop := ds.str("00080018")
		if !want[sop] || seen[sop] {
			return fmt.Errorf("unexpected or repeated SOPInstanceUID %q", sop)
		}
		seen[sop] = true
	}
	return nil
}

// --- WADO-RS frames ---

func (b *bench) frameRow(ds *dataset, stored map[string]bool) *row {
	r := &row{scenario: scFrame, throughput: true, target: 2, res: map[string]*measure{},
		what: fmt.Sprintf("WADO-RS frame 1 of the %d-slice %dx%d CT (round robin), %d requests, %d workers; requests/s",
			len(ds.instances), ds.rows, ds.cols, b.cfg.frameN, b.cfg.workers)}
	minSize := ds.rows * ds.cols * 2
	hdr := map[string]string{"Accept": b.cfg.frameAccept}
	for _, s := range b.servers {
		if !stored[s.name] {
			r.res[s.name] = &measure{skipped: "series not stored"}
			continue
		}
		b.settle()
		logf("%s on %s ...", scFrame, s.name)
		m := b.pool(s, b.cfg.frameN, b.cfg.workers, b.cfg.frameMax, func(i int) (time.Duration, int64, error) {
			in := &ds.instances[i%len(ds.instances)]
			url := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/1", s.root, in.study, in.series, in.sop)
			rep, d, err := b.do("GET", url, hdr, 0, nil)
			if err != nil {
				return d, 0, err
			}
			n, err := firstPartSize(rep)
			if err != nil {
				return d, 0, fmt.Errorf("frame %s: %v", in.sop, err)
			}
			if n < minSize {
				return d, 0, fmt.Errorf("frame %s: %d bytes, want >= %d", in.sop, n, minSize)
			}
			return d, int64(n), nil
		})
		b.record(r, s, m)
	}
	return r
}

// firstPartSize parses a multipart/related reply and returns the size of
// its first part.
func firstPartSize(r reply) (int, error) {
	mt, params, err := mime.ParseMediaType(r.ctype)
	if err != nil {
		return 0, fmt.Errorf("Content-Type %q: %v", r.ctype, err)
	}
	if mt != "multipart/related" || params["boundary"] == "" {
		return 0, fmt.Errorf("Content-Type %q, want multipart/related with a boundary", r.ctype)
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	p, err := mr.NextPart()
	if err != nil {
		return 0, fmt.Errorf("first part: %v", err)
	}
	n, err := io.Copy(io.Discard, p)
	if err != nil {
		return 0, fmt.Errorf("reading first part: %v", err)
	}
	return int(n), nil
}

// --- report ---

func (b *bench) report(root string) string {
	var w strings.Builder
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&w, "# dwbench results\n\n")
	fmt.Fprintf(&w, "- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&w, "- machine: %s, %d CPUs, Linux %s, %s %s/%s\n", host, runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, s := range b.servers {
		fmt.Fprintf(&w, "- %s: %s (%s)\n", s.name, s.base, s.version)
	}
	fmt.Fprintf(&w, "- one Go HTTP client for both (keep-alive, no compression), loopback; servers run one after the other (%s first), sync(2) + %v idle before each run; UID root %s\n\n", b.cfg.first, b.cfg.pause, root)

	fmt.Fprintf(&w, "| Scenario | Sanping | Orthanc | Sanping vs Orthanc | Target | Met |\n")
	fmt.Fprintf(&w, "|---|---:|---:|---:|---:|:---:|\n")
	for _, r := range b.rows {
		sp, or := r.res["Sanping"], r.res["Orthanc"]
		ratio, met, target := "-", "-", "-"
		if r.target > 0 {
			target = fmt.Sprintf(">= %.1fx", r.target)
		}
		if r.maxMedian > 0 {
			target = fmt.Sprintf("Sanping p50 < %v", r.maxMedian)
			if valid(sp) {
				met = "no"
				if sp.pct(.5) < r.maxMedian {
					met = "yes"
				}
			}
		}
		if valid(sp) && valid(or) {
			var x float64
			if r.throughput {
				x = sp.rate() / or.rate()
			} else {
				x = float64(or.pct(.5)) / float64(sp.pct(.5))
			}
			ratio = fmt.Sprintf("%.2fx", x)
			if r.target > 0 {
				met = "no"
				if x >= r.target {
					met = "yes"
				}
			}
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s |\n", r.scenario, cell(r, sp), cell(r, or), ratio, target, met)
	}
	fmt.Fprintf(&w, "\nThroughput rows: requests/s over the total wall time (median per-request latency in brackets); ratio = Sanping rate / Orthanc rate.\n")
	fmt.Fprintf(&w, "Latency rows: median of the timed sequential GETs (p90 in brackets); ratio = Orthanc median / Sanping median (how many times faster Sanping is).\n\n")

	fmt.Fprintf(&w, "## Details\n\nServer CPU = the server process's user+system CPU seconds during the run (from /proc, when its pid is known); client CPU = dwbench's own. The machine has %d CPUs, shared by client and server.\n\n", runtime.NumCPU())
	fmt.Fprintf(&w, "| Scenario | Server | Requests | Errors | Wall | req/s | p50 | p90 | max | MB/s | Server CPU | Client CPU |\n")
	fmt.Fprintf(&w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range b.rows {
		names := make([]string, 0, len(r.res))
		for n := range r.res {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			m := r.res[n]
			if m.skipped != "" {
				fmt.Fprintf(&w, "| %s | %s | skipped: %s |||||||||| \n", r.scenario, n, m.skipped)
				continue
			}
			srvCPU := "-"
			if m.serverCPU >= 0 {
				srvCPU = fmt.Sprintf("%.2fs", m.serverCPU.Seconds())
			}
			fmt.Fprintf(&w, "| %s | %s | %d | %d | %.2fs | %.1f | %s | %s | %s | %.1f | %s | %.2fs |\n",
				r.scenario, n, m.requests, m.errs, m.wall.Seconds(), m.rate(),
				ms(m.pct(.5)), ms(m.pct(.9)), ms(m.pct(1)), float64(m.bytes)/1e6/m.wall.Seconds(),
				srvCPU, m.clientCPU.Seconds())
		}
	}
	fmt.Fprintf(&w, "\n## Scenarios\n\n")
	for _, r := range b.rows {
		fmt.Fprintf(&w, "- %s: %s\n", r.scenario, r.what)
	}
	if b.errors > 0 {
		fmt.Fprintf(&w, "\n**FAILED: %d request(s) returned errors; the figures are not valid.**\n", b.errors)
		for _, r := range b.rows {
			for n, m := range r.res {
				for _, e := range m.firstErrs {
					fmt.Fprintf(&w, "- %s / %s: %s\n", r.scenario, n, e)
				}
			}
		}
	}
	return w.String()
}

func valid(m *measure) bool {
	return m != nil && m.skipped == "" && m.errs == 0 && m.requests > 0
}

func cell(r *row, m *measure) string {
	switch {
	case m == nil:
		return "not run"
	case strings.HasPrefix(m.skipped, "not supported"):
		return m.skipped
	case m.skipped != "":
		return "skipped"
	case m.errs > 0:
		return fmt.Sprintf("**%d ERRORS**", m.errs)
	case r.throughput:
		return fmt.Sprintf("%.1f/s (%s)", m.rate(), ms(m.pct(.5)))
	default:
		return fmt.Sprintf("%s (%s)", ms(m.pct(.5)), ms(m.pct(.9)))
	}
}

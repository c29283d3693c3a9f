// Command stationbench is bench/station.sh's helper. It has two subcommands:
//
//	stationbench stow -url http://127.0.0.1:18090 -workers 8 DIR
//	stationbench report RUNS.tsv
//
// stow sends every Part 10 file in DIR to the server's STOW-RS endpoint (POST
// /dicom-web/studies, one instance per request, Bearer token from $BENCH_TOKEN), checks
// each answer and prints one line: "files=N bytes=B seconds=S". The files are read into
// memory first, so the time covers the requests only: the server's ingest rate.
//
// report reads the runs that station.sh logged and prints the markdown tables: medians
// over the repetitions, the station/reference ratio of each repetition, and every run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: stationbench stow|report ...")
	}
	var err error
	switch os.Args[1] {
	case "stow":
		err = stowCommand(os.Args[2:])
	case "report":
		err = reportCommand(os.Args[2:])
	default:
		fatalf("unknown subcommand %q: use stow or report", os.Args[1])
	}
	if err != nil {
		fatalf("%s: %v", os.Args[1], err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "stationbench: "+format+"\n", a...)
	os.Exit(1)
}

// --- stow ---

// instance is one file to send.
type instance struct {
	path, sop string
	data      []byte
}

func stowCommand(args []string) error {
	fl := flag.NewFlagSet("stow", flag.ContinueOnError)
	base := fl.String("url", "http://127.0.0.1:18090", "server base URL")
	workers := fl.Int("workers", 8, "concurrent requests, one instance each")
	timeout := fl.Duration("timeout", 2*time.Minute, "per-request timeout")
	if err := fl.Parse(args); err != nil {
		return err
	}
	token := os.Getenv("BENCH_TOKEN")
	if fl.NArg() != 1 || token == "" || *workers < 1 {
		return errors.New("usage: BENCH_TOKEN=spt_... stationbench stow [-url URL] [-workers N] DIR")
	}
	ins, err := readDir(fl.Arg(0))
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		Proxy:               nil, // loopback only
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: *workers,
		DisableCompression:  true,
	}}
	url := strings.TrimRight(*base, "/") + "/dicom-web/studies"
	var next, failed atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ins) {
					return
				}
				if err := stowOne(client, url, token, &ins[i]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					if failed.Add(1) >= 20 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if len(errs) > 0 {
		for _, e := range errs[:min(len(errs), 5)] {
			fmt.Fprintln(os.Stderr, "  ", e)
		}
		return fmt.Errorf("%d of %d instances failed", len(errs), len(ins))
	}
	var total int64
	for _, in := range ins {
		total += int64(len(in.data))
	}
	fmt.Printf("files=%d bytes=%d seconds=%.4f\n", len(ins), total, wall.Seconds())
	return nil
}

func readDir(dir string) ([]instance, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ins []instance
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		sop, err := metaSOPInstance(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		ins = append(ins, instance{path: p, sop: sop, data: data})
	}
	if len(ins) == 0 {
		return nil, fmt.Errorf("no files in %s", dir)
	}
	return ins, nil
}

// metaSOPInstance reads MediaStorageSOPInstanceUID (0002,0003) from the file meta group,
// which PS3.10 7.1 writes in Explicit VR Little Endian after the preamble and "DICM".
func metaSOPInstance(b []byte) (string, error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return "", errors.New("not a DICOM Part 10 file")
	}
	for i := 132; i+8 <= len(b); {
		group, elem, vr := binary.LittleEndian.Uint16(b[i:]), binary.LittleEndian.Uint16(b[i+2:]), string(b[i+4:i+6])
		if group != 0x0002 {
			break
		}
		n, hdr := int(binary.LittleEndian.Uint16(b[i+6:])), 8
		switch vr {
		case "OB", "OW", "UN", "UT", "UC", "UR", "SQ":
			if i+12 > len(b) {
				return "", errors.New("truncated file meta")
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[i+8:])), 12
		}
		if i+hdr+n > len(b) {
			return "", errors.New("truncated file meta")
		}
		if elem == 0x0003 {
			return strings.TrimRight(string(b[i+hdr:i+hdr+n]), "\x00 "), nil
		}
		i += hdr + n
	}
	return "", errors.New("no MediaStorageSOPInstanceUID")
}

const boundary = "stationbench-5b7e0c3d1f"

// stowOne stores one instance and wants a ReferencedSOPSequence (0008,1199) naming it and no
// FailedSOPSequence (0008,1198), as dwbench does.
func stowOne(client *http.Client, url, token string, in *instance) error {
	head := []byte("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n")
	tail := []byte("\r\n--" + boundary + "--\r\n")
	body := func() io.Reader {
		return io.MultiReader(bytes.NewReader(head), bytes.NewReader(in.data), bytes.NewReader(tail))
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, body())
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(head) + len(in.data) + len(tail))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
	req.Header.Set("Accept", "application/dicom+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", in.path, err)
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: %v", in.path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %d: %.200s", in.path, resp.StatusCode, reply)
	}
	var ds dicomJSON
	if err := json.Unmarshal(reply, &ds); err != nil {
		return fmt.Errorf("%s: answer is not DICOM JSON: %v", in.path, err)
	}
	if len(ds["00081198"].Value) > 0 {
		return fmt.Errorf("%s: FailedSOPSequence in the answer", in.path)
	}
	var item dicomJSON
	if ref := ds["00081199"].Value; len(ref) != 1 || json.Unmarshal(ref[0], &item) != nil || item.str("00081155") != in.sop {
		return fmt.Errorf("%s: no ReferencedSOPSequence naming %s: %.200s", in.path, in.sop, reply)
	}
	return nil
}

// dicomJSON is one PS3.18 F.2 DICOM JSON data set.
type dicomJSON map[string]struct {
	Value []json.RawMessage `json:"Value"`
}

func (d dicomJSON) str(tag string) string {
	var s string
	if v := d[tag].Value; len(v) > 0 {
		_ = json.Unmarshal(v[0], &s)
	}
	return s
}

// --- report ---

// run is one timed run, a line of station.sh's runs.tsv:
// case, tool, rep, order, files, bytes, seconds, cpu (of the receiving process), and the
// machine's 1-minute load average at the end of the run.
type run struct {
	kase, tool          string
	rep, order          int
	files               int
	bytes               int64
	seconds, cpu, load1 float64
}

func (r run) rate() float64 { return float64(r.files) / r.seconds }
func (r run) mbps() float64 { return float64(r.bytes) / 1e6 / r.seconds }

// comparison is one case of the report: the station's program against the reference.
type comparison struct {
	kase, what         string
	station, reference string // tool names in runs.tsv
	stationName        string
	referenceName      string
	target             float64 // station rate / reference rate wanted
}

var comparisons = []comparison{
	{"ct-upload", "CT series to the server over HTTP", "client-upload", "stow",
		"`sanping-station upload DIR`", "STOW-RS", 0.8},
	{"scp-small", "small MR instances by C-STORE from `storescu`, one association", "client-scp", "storescp",
		"`sanping-station scp`", "DCMTK `storescp`", 0.6},
	{"scp-ct", "CT slices by C-STORE from `storescu`, one association", "client-scp", "storescp",
		"`sanping-station scp`", "DCMTK `storescp`", 0.8},
}

func reportCommand(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: stationbench report RUNS.tsv")
	}
	runs, err := readRuns(args[0])
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "| Case | Station program | Reference | Station / reference, median (per repetition) | Target | Met |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|:---:|\n")
	for _, c := range comparisons {
		st, ref := byRep(runs, c.kase, c.station), byRep(runs, c.kase, c.reference)
		if len(st) == 0 && len(ref) == 0 {
			continue
		}
		var ratios []float64
		var each []string
		for _, rep := range sortedKeys(st) {
			if r, ok := ref[rep]; ok {
				x := st[rep].rate() / r.rate()
				ratios = append(ratios, x)
				each = append(each, fmt.Sprintf("%.2f", x))
			}
		}
		ratio, met := "-", "-"
		if len(ratios) > 0 {
			m := median(ratios)
			ratio = fmt.Sprintf("**%.2fx** (%s)", m, strings.Join(each, ", "))
			met = "no"
			if m >= c.target {
				met = "yes"
			}
		}
		var sample run
		for _, r := range st {
			sample = r
		}
		for _, r := range ref {
			sample = r
		}
		what := fmt.Sprintf("%s: %s, %d files of %.0f KB", c.kase, c.what, sample.files, float64(sample.bytes)/float64(sample.files)/1024)
		fmt.Fprintf(w, "| %s | %s: %s | %s: %s | %s | >= %.2fx | %s |\n", what,
			c.stationName, cell(st), c.referenceName, cell(ref), ratio, c.target, met)
	}
	fmt.Fprintf(w, "\nEach figure is the median over the repetitions (files/s, and MB/s of DICOM file bytes); the ratio is the median of the per-repetition ratios of files/s.\n\n")
	fmt.Fprintf(w, "### Every run\n\n")
	fmt.Fprintf(w, "Receiver CPU: user+system seconds of the receiving process during the run (the server for ct-upload, the SCP otherwise), from /proc. Load: the machine's 1-minute load average after the run (other work shares the machine).\n\n")
	fmt.Fprintf(w, "| Case | Program | Rep | Order | Files | MB | Wall | files/s | MB/s | Receiver CPU | Load |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %.0f | %.2fs | %.1f | %.1f | %.2fs | %.1f |\n",
			r.kase, r.tool, r.rep, r.order, r.files, float64(r.bytes)/1e6, r.seconds, r.rate(), r.mbps(), r.cpu, r.load1)
	}
	return nil
}

func readRuns(path string) ([]run, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var runs []run
	for n, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 9", path, n+1, len(f))
		}
		var r run
		var errs [7]error
		r.kase, r.tool = f[0], f[1]
		r.rep, errs[0] = strconv.Atoi(f[2])
		r.order, errs[1] = strconv.Atoi(f[3])
		r.files, errs[2] = strconv.Atoi(f[4])
		r.bytes, errs[3] = strconv.ParseInt(f[5], 10, 64)
		r.seconds, errs[4] = strconv.ParseFloat(f[6], 64)
		r.cpu, errs[5] = strconv.ParseFloat(f[7], 64)
		r.load1, errs[6] = strconv.ParseFloat(f[8], 64)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n+1, err)
		}
		if r.seconds <= 0 || r.files <= 0 {
			return nil, fmt.Errorf("%s:%d: no files or no time", path, n+1)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

func byRep(runs []run, kase, tool string) map[int]run {
	m := map[int]run{}
	for _, r := range runs {
		if r.kase == kase && r.tool == tool {
			m[r.rep] = r
		}
	}
	return m
}

func sortedKeys(m map[int]run) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

func cell(m map[int]run) string {
	if len(m) == 0 {
		return "not run"
	}
	var rates, mbps []float64
	for _, r := range m {
		rates = append(rates, r.rate())
		mbps = append(mbps, r.mbps())
	}
	return fmt.Sprintf("%.1f files/s, %.1f MB/s", median(rates), median(mbps))
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

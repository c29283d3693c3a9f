package main

// Rendering scenarios: the DICOMweb rendered resource (PS3.18 10.4.1.1.5),
// GET .../studies/{s}/series/{r}/instances/{i}/rendered with an Accept of
// image/png or image/jpeg.
//
// Every response is checked: 2xx, the Content-Type asked for, an image
// header (image.DecodeConfig) of the expected size, and a full decode with
// Go's image/png or image/jpeg. The full decodes run after the timed run,
// once per distinct body (identical bodies are compared byte for byte), so
// that the client's decoding does not compete for the 2 cores with the
// server being measured.
//
// A server whose first (untimed) request answers 404, 406 or 501 gets a
// "not supported by <server>: HTTP <status>" row instead of errors.

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// generateCR makes one CR image of rows x cols in its own study and series
// and writes it to dir/cr/00001.dcm.
func generateCR(dir, root string, rows, cols int, seed uint64) (*dataset, error) {
	t0 := time.Now()
	sub := filepath.Join(dir, "cr")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return nil, err
	}
	spec := sliceSpec{
		modality:     "CR",
		patientName:  "DWBENCH^CR001",
		patientID:    "DWB-cr-001",
		studyUID:     root + ".1.1",
		seriesUID:    root + ".2.1",
		sopUID:       root + ".3.1.1",
		studyID:      "1",
		seriesNumber: 1,
		seriesDesc:   fmt.Sprintf("dwbench cr %dx%d", cols, rows),
		accession:    "DWBC1",
		instanceNum:  1,
		rows:         rows,
		cols:         cols,
		seed:         seed * 1000,
	}
	data := makeCR(spec)
	if err := os.WriteFile(filepath.Join(sub, "00001.dcm"), data, 0o644); err != nil {
		return nil, err
	}
	logf("generated cr: 1 x CR MONOCHROME1 %dx%d (columns x rows), %.1f MB, in %v",
		cols, rows, float64(len(data))/1e6, time.Since(t0).Round(time.Millisecond))
	return &dataset{name: "cr", rows: rows, cols: cols,
		instances: []instance{{study: spec.studyUID, series: spec.seriesUID, sop: spec.sopUID, data: data}}}, nil
}

// renderCase is one rendering run, the same on every server.
type renderCase struct {
	ds      *dataset
	stored  map[string]bool
	accept  string // "image/png" or "image/jpeg"
	query   string // without "?"; "" for none
	workers int
	n       int
	maxDur  time.Duration
	rule    imgRule
}

func (c *renderCase) url(s *server, in *instance) string {
	u := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/rendered", s.root, in.study, in.series, in.sop)
	if c.query != "" {
		u += "?" + c.query
	}
	return u
}

// imgRule is what a rendered image must look like.
//
// Without a viewport (vw = 0) it must be cols x rows. With one, any size
// whose sides fit vw x vh and whose height is within 2 px of
// width * rows/cols (the aspect ratio kept) is accepted; so is an image of
// exactly vw x vh that holds the fitted image centred between black bands
// (letterboxed, which is what Orthanc sends): its bands, away from the
// image's edge, must then be black in the decoded image.
type imgRule struct {
	cols, rows int
	vw, vh     int
}

// letterboxMargin is how far from the fitted image's edge the bands of a
// letterboxed image are checked (JPEG ringing and resampling blur the
// edge), and letterboxMaxGrey how bright a band pixel may be.
const (
	letterboxMargin  = 8
	letterboxMaxGrey = 32
)

// fits tells whether w x h fits the viewport with the aspect ratio kept.
func (r imgRule) fits(w, h int) bool {
	want := float64(w) * float64(r.rows) / float64(r.cols)
	return w >= 1 && h >= 1 && w <= r.vw && h <= r.vh && math.Abs(float64(h)-want) <= 2
}

// letterboxed tells whether w x h is the viewport size without fitting it
// (so the answer can only be right if it is letterboxed).
func (r imgRule) letterboxed(w, h int) bool {
	return r.vw > 0 && w == r.vw && h == r.vh && !r.fits(w, h)
}

// checkSize checks the size given by the image header.
func (r imgRule) checkSize(w, h int) error {
	if r.vw == 0 {
		if w != r.cols || h != r.rows {
			return fmt.Errorf("image is %dx%d, want %dx%d", w, h, r.cols, r.rows)
		}
		return nil
	}
	if r.fits(w, h) || r.letterboxed(w, h) {
		return nil
	}
	return fmt.Errorf("image is %dx%d, want one that fits %dx%d with the aspect ratio of %dx%d kept (height = width * %.4f +- 2 px), or exactly %dx%d letterboxed",
		w, h, r.vw, r.vh, r.cols, r.rows, float64(r.rows)/float64(r.cols), r.vw, r.vh)
}

// fitted returns the size of the source fitted into the viewport, and its
// offset when centred there.
func (r imgRule) fitted() (fw, fh, ox, oy int) {
	s := math.Min(float64(r.vw)/float64(r.cols), float64(r.vh)/float64(r.rows))
	fw = min(r.vw, int(math.Round(float64(r.cols)*s)))
	fh = min(r.vh, int(math.Round(float64(r.rows)*s)))
	return fw, fh, (r.vw - fw) / 2, (r.vh - fh) / 2
}

// checkImage checks a decoded image: its size and, when letterboxed, that
// the bands around the fitted image are black (so it was not stretched).
func (r imgRule) checkImage(img image.Image) error {
	bd := img.Bounds()
	if err := r.checkSize(bd.Dx(), bd.Dy()); err != nil {
		return err
	}
	if !r.letterboxed(bd.Dx(), bd.Dy()) {
		return nil
	}
	fw, fh, ox, oy := r.fitted()
	if ox < 2*letterboxMargin && oy < 2*letterboxMargin {
		return fmt.Errorf("image is %dx%d: neither fitted (%dx%d) nor visibly letterboxed", bd.Dx(), bd.Dy(), fw, fh)
	}
	inBand := func(x, y int) bool {
		return x < ox-letterboxMargin || x >= ox+fw+letterboxMargin || y < oy-letterboxMargin || y >= oy+fh+letterboxMargin
	}
	for y := 0; y < bd.Dy(); y++ {
		for x := 0; x < bd.Dx(); x++ {
			if !inBand(x, y) {
				continue
			}
			if g := color.GrayModel.Convert(img.At(bd.Min.X+x, bd.Min.Y+y)).(color.Gray).Y; g > letterboxMaxGrey {
				return fmt.Errorf("image is %dx%d, the viewport size, but not letterboxed around a %dx%d image: grey %d at (%d,%d), outside it", bd.Dx(), bd.Dy(), fw, fh, g, x, y)
			}
		}
	}
	return nil
}

func (b *bench) renderCRPNGRows(ds *dataset, stored map[string]bool) []*row {
	rule := imgRule{cols: ds.cols, rows: ds.rows}
	desc := fmt.Sprintf("WADO-RS rendered, the %dx%d 12-bit MONOCHROME1 CR (%.1f MB) as image/png at full size",
		ds.cols, ds.rows, float64(len(ds.instances[0].data))/1e6)
	seq := &row{scenario: scRenderCRPNG + " (sequential)", throughput: true, target: 20, res: map[string]*measure{},
		what: fmt.Sprintf("%s, %d sequential GETs (capped at %v) after 1 untimed GET; requests/s", desc, b.cfg.renderN, b.cfg.renderMax)}
	b.renderRun(seq, renderCase{ds: ds, stored: stored, accept: "image/png", workers: 1,
		n: b.cfg.renderN, maxDur: b.cfg.renderMax, rule: rule})
	conc := &row{scenario: fmt.Sprintf("%s (%d workers)", scRenderCRPNG, b.cfg.renderWorkers), throughput: true, target: 20, res: map[string]*measure{},
		what: fmt.Sprintf("%s, %d GETs on %d workers (capped at %v) after 1 untimed GET; requests/s", desc, b.cfg.renderN, b.cfg.renderWorkers, b.cfg.renderMax)}
	b.renderRun(conc, renderCase{ds: ds, stored: stored, accept: "image/png", workers: b.cfg.renderWorkers,
		n: b.cfg.renderN, maxDur: b.cfg.renderMax, rule: rule})
	return []*row{seq, conc}
}

func (b *bench) renderCRJPEGRow(ds *dataset, stored map[string]bool) *row {
	r := &row{scenario: scRenderCRJPEG, throughput: false, maxMedian: 50 * time.Millisecond, res: map[string]*measure{},
		what: fmt.Sprintf("WADO-RS rendered, the %dx%d CR as image/jpeg with ?viewport=1024,1024 (any size that fits 1024x1024 with the aspect ratio kept, or 1024x1024 letterboxed), %d sequential GETs (capped at %v) after 1 untimed GET; median latency",
			ds.cols, ds.rows, b.cfg.renderN, b.cfg.renderMax)}
	b.renderRun(r, renderCase{ds: ds, stored: stored, accept: "image/jpeg", query: "viewport=1024,1024", workers: 1,
		n: b.cfg.renderN, maxDur: b.cfg.renderMax, rule: imgRule{cols: ds.cols, rows: ds.rows, vw: 1024, vh: 1024}})
	return r
}

func (b *bench) renderCTPNGRow(ds *dataset, stored map[string]bool) *row {
	r := &row{scenario: scRenderCTPNG, throughput: true, target: 3, res: map[string]*measure{},
		what: fmt.Sprintf("WADO-RS rendered, the %d-slice %dx%d CT (round robin) as image/png, %d requests (capped at %v), %d workers, after 1 untimed GET; requests/s",
			len(ds.instances), ds.cols, ds.rows, b.cfg.renderCTN, b.cfg.renderCTMax, b.cfg.workers)}
	b.renderRun(r, renderCase{ds: ds, stored: stored, accept: "image/png", workers: b.cfg.workers,
		n: b.cfg.renderCTN, maxDur: b.cfg.renderCTMax, rule: imgRule{cols: ds.cols, rows: ds.rows}})
	return r
}

// unsupportedStatus are the answers that mean "this server does not do
// that rendering", which skip the scenario on that server.
func unsupportedStatus(code int) bool {
	return code == 404 || code == 406 || code == 501
}

func (b *bench) renderRun(r *row, c renderCase) {
	hdr := map[string]string{"Accept": c.accept}
	for _, s := range b.servers {
		if !c.stored[s.name] {
			r.res[s.name] = &measure{skipped: c.ds.name + " not stored"}
			continue
		}
		b.settle()
		logf("%s on %s ...", r.scenario, s.name)

		// The first request is untimed: it tells whether the server
		// supports this rendering at all, and warms it up.
		probeURL := c.url(s, &c.ds.instances[0])
		rep, d, err := b.do("GET", probeURL, hdr, 0, nil)
		if err != nil && unsupportedStatus(rep.status) {
			m := &measure{skipped: fmt.Sprintf("not supported by %s: HTTP %d", s.name, rep.status)}
			r.res[s.name] = m
			logf("%-18s %-8s %s (%s)", r.scenario, s.name, m.skipped, snippet(rep.body))
			continue
		}
		if err != nil {
			logf("%-18s %-8s untimed first GET failed (%v); timing anyway", r.scenario, s.name, err)
		} else if info, err := describeImage(rep, c.accept, c.rule); err != nil {
			logf("%-18s %-8s untimed first GET: HTTP %d, %q, %d bytes, %v: BAD: %v", r.scenario, s.name, rep.status, rep.ctype, len(rep.body), ms(d), err)
		} else {
			logf("%-18s %-8s untimed first GET: HTTP %d, %q, %d bytes, %v; %s", r.scenario, s.name, rep.status, rep.ctype, len(rep.body), ms(d), info)
		}
		if err == nil && b.cfg.keep && b.dir != "" {
			ext := ".png"
			if c.accept == "image/jpeg" {
				ext = ".jpg"
			}
			name := strings.NewReplacer(" ", "", "(", "-", ")", "").Replace(r.scenario)
			f := filepath.Join(b.dir, name+"-"+strings.ToLower(s.name)+ext)
			if err := os.WriteFile(f, rep.body, 0o644); err != nil {
				logf("writing %s: %v", f, err)
			}
		}

		v := newBodyCheck(c.accept, c.rule)
		m := b.pool(s, c.n, c.workers, c.maxDur, func(i int) (time.Duration, int64, error) {
			in := &c.ds.instances[i%len(c.ds.instances)]
			rep, d, err := b.do("GET", c.url(s, in), hdr, 0, nil)
			if err != nil {
				return d, 0, err
			}
			if err := v.check(rep); err != nil {
				return d, 0, fmt.Errorf("rendered %s: %v", in.sop, err)
			}
			return d, int64(len(rep.body)), nil
		})
		for _, err := range v.finish() {
			m.errs++
			if len(m.firstErrs) < 5 {
				m.firstErrs = append(m.firstErrs, err.Error())
			}
		}
		b.record(r, s, m)
	}
}

// bodyCheck checks rendered images: the cheap checks inline, the full
// decode later, once per distinct body.
type bodyCheck struct {
	accept string
	rule   imgRule
	seed   maphash.Seed
	mu     sync.Mutex
	bodies map[uint64][][]byte // distinct bodies still to decode, by hash
	held   int
}

// maxHeldBodies bounds the distinct bodies kept for decoding after the
// run; beyond it, bodies are decoded inline.
const maxHeldBodies = 512

func newBodyCheck(accept string, rule imgRule) *bodyCheck {
	return &bodyCheck{accept: accept, rule: rule, seed: maphash.MakeSeed(), bodies: map[uint64][][]byte{}}
}

// checkHeader checks the Content-Type and the image header's size.
func checkHeader(rep reply, accept string, rule imgRule) error {
	mt, _, err := mime.ParseMediaType(rep.ctype)
	if err != nil || mt != accept {
		return fmt.Errorf("Content-Type %q, want %s", rep.ctype, accept)
	}
	var cfg image.Config
	if accept == "image/png" {
		cfg, err = png.DecodeConfig(bytes.NewReader(rep.body))
	} else {
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(rep.body))
	}
	if err != nil {
		return fmt.Errorf("%s header of a %d-byte body: %v", accept, len(rep.body), err)
	}
	return rule.checkSize(cfg.Width, cfg.Height)
}

func decodeImage(body []byte, accept string, rule imgRule) (image.Image, error) {
	var img image.Image
	var err error
	if accept == "image/png" {
		img, err = png.Decode(bytes.NewReader(body))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(body))
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the %d-byte %s: %v", len(body), accept, err)
	}
	if err := rule.checkImage(img); err != nil {
		return nil, fmt.Errorf("decoded %s: %v", accept, err)
	}
	return img, nil
}

func (v *bodyCheck) check(rep reply) error {
	if err := checkHeader(rep, v.accept, v.rule); err != nil {
		return err
	}
	h := maphash.Bytes(v.seed, rep.body)
	v.mu.Lock()
	for _, old := range v.bodies[h] {
		if bytes.Equal(old, rep.body) {
			v.mu.Unlock()
			return nil // the same body is decoded after the run
		}
	}
	if v.held < maxHeldBodies {
		v.bodies[h] = append(v.bodies[h], rep.body)
		v.held++
		v.mu.Unlock()
		return nil
	}
	v.mu.Unlock()
	_, err := decodeImage(rep.body, v.accept, v.rule)
	return err
}

// finish decodes every distinct body held and returns the failures (one
// per distinct failing body).
func (v *bodyCheck) finish() []error {
	var errs []error
	for _, list := range v.bodies {
		for _, body := range list {
			if _, err := decodeImage(body, v.accept, v.rule); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if v.held > 1 {
		logf("    decoded %d distinct bodies after the run", v.held)
	}
	v.bodies, v.held = nil, 0
	return errs
}

// describeImage fully checks one reply and describes the image for the
// log: its Go type and the mean grey level (0-255) of the top-left corner
// and of the centre (on the CR, the corner is air, which MONOCHROME1
// should display dark, and the centre the spine, bright).
func describeImage(rep reply, accept string, rule imgRule) (string, error) {
	if err := checkHeader(rep, accept, rule); err != nil {
		return "", err
	}
	img, err := decodeImage(rep.body, accept, rule)
	if err != nil {
		return "", err
	}
	bd := img.Bounds()
	mean := func(x0, y0 int) float64 {
		var sum, n float64
		for y := y0; y < min(y0+32, bd.Max.Y); y++ {
			for x := x0; x < min(x0+32, bd.Max.X); x++ {
				sum += float64(color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y)
				n++
			}
		}
		if n == 0 {
			return math.NaN()
		}
		return sum / n
	}
	if bd.Empty() {
		return "", errors.New("empty image")
	}
	shape := ""
	if rule.letterboxed(bd.Dx(), bd.Dy()) {
		fw, fh, _, _ := rule.fitted()
		shape = fmt.Sprintf(" (letterboxed around %dx%d)", fw, fh)
	}
	return fmt.Sprintf("%dx%d%s %T, grey mean corner %.0f, centre %.0f",
		bd.Dx(), bd.Dy(), shape, img, mean(bd.Min.X, bd.Min.Y), mean(bd.Min.X+bd.Dx()/2-16, bd.Min.Y+bd.Dy()/2-16)), nil
}

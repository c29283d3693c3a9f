package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
)

// TestBinaryStationUploadJPEGLS, with the built binaries: `sanping-station upload` sends a CR
// (implicit VR, 7.5 MB) and a two-frame CT as JPEG-LS lossless; the county stores them as
// such, serves them as JPEG-LS with transfer-syntax=* and as the original pixels, bit for bit,
// without; and the original CT sent afterwards through STOW-RS is the same instance (already
// stored, the JPEG-LS copy kept), not a conflict.
func TestBinaryStationUploadJPEGLS(t *testing.T) {
	bin := t.TempDir()
	sanping := goBuild(t, bin, "sanping", "../cmd/sanping")
	station := goBuild(t, bin, "sanping-station", "../cmd/sanping-station")
	data := filepath.Join(t.TempDir(), "county", "data")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, sanping, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("sanping %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("site", "add", "-data", data, "-kind", "hospital", "dahua", "大化县人民医院")
	cli("site", "add", "-data", data, "-kind", "clinic", "-parent", "dahua", "longshan", "龙山村卫生室")
	token := regexp.MustCompile(`spt_[A-Za-z0-9_-]+`).FindString(cli("token", "create", "-data", data, "-institution", "longshan", "-role", "clinic", "DR"))
	if token == "" {
		t.Fatal("no token printed")
	}
	httpPort, mediaPort, tcpPort, turnPort := freePort(t), freePort(t), freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	srv := exec.Command(sanping, "-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "-data", data,
		"-media-udp", fmt.Sprintf(":%d", mediaPort), "-media-tcp", fmt.Sprintf(":%d", tcpPort), "-turn", fmt.Sprintf(":%d", turnPort))
	srv.Env = append(os.Environ(), "SANPING_ADMIN_PASSWORD=Admin-password-2026")
	var srvOut testtool.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
		if t.Failed() {
			t.Logf("server output:\n%s", srvOut.String())
		}
	})
	waitUntil(t, 30*time.Second, "the server to answer /healthz", func() bool {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	mod, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		t.Fatalf("locating suyashkumar/dicom testdata: %v", err)
	}
	dir := t.TempDir()
	originals := map[string][]byte{}
	for _, n := range []string{"4.dcm", "5.dcm"} {
		b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(mod)), "testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		originals[n] = b
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := exec.CommandContext(ctx, station, "upload", "-server", base, "-token", token, "-journal", t.TempDir(), dir)
	up.Env = append(os.Environ(), "SANPING_LANG=en")
	out, err := up.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "2 files: 2 stored") {
		t.Fatalf("sanping-station upload: %v\n%s", err, out)
	}

	get := func(path, accept string) (parts [][]byte, types []string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/dicom-web"+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", accept)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(res.Body)
			t.Fatalf("GET %s: %s: %s", path, res.Status, b)
		}
		_, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		mr := multipart.NewReader(res.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return parts, types
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			parts, types = append(parts, b), append(types, p.Header.Get("Content-Type"))
		}
	}
	for name, b := range originals {
		in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/studies/%s/series/%s/instances/%s", in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID)
		stored, _ := get(path, `multipart/related; type="application/dicom"; transfer-syntax=*`)
		if len(stored) != 1 {
			t.Fatalf("%s: %d objects", name, len(stored))
		}
		sin, err := dcm.Parse(bytes.NewReader(stored[0]), int64(len(stored[0])))
		if err != nil || sin.TransferSyntax != dcm.JPEGLSLossless {
			t.Fatalf("%s: stored as %v (%v), want JPEG-LS lossless", name, sin, err)
		}
		t.Logf("%s: %d bytes, stored as JPEG-LS in %d", name, len(b), len(stored[0]))
		frames, err := in.Frames(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		nums := make([]string, len(frames))
		for i := range frames {
			nums[i] = fmt.Sprint(i + 1)
		}
		ls, types := get(path+"/frames/"+strings.Join(nums, ","), `multipart/related; type="application/octet-stream"; transfer-syntax=*`)
		native, _ := get(path+"/frames/"+strings.Join(nums, ","), `multipart/related; type="application/octet-stream"`)
		if len(ls) != len(frames) || len(native) != len(frames) {
			t.Fatalf("%s: %d and %d frames, want %d", name, len(ls), len(native), len(frames))
		}
		for i, fr := range frames {
			if !strings.Contains(types[i], dcm.JPEGLSLossless) || !bytes.HasPrefix(ls[i], []byte{0xFF, 0xD8, 0xFF, 0xF7}) {
				t.Errorf("%s frame %d with transfer-syntax=*: %s", name, i+1, types[i])
			}
			if want := b[fr[0].Offset : fr[0].Offset+fr[0].Length]; !bytes.Equal(native[i], want) {
				t.Errorf("%s frame %d: native pixels served are not the original's", name, i+1)
			}
		}
	}

	// The original CT through STOW-RS: the same instance in another transfer syntax.
	var body bytes.Buffer
	fmt.Fprintf(&body, "--B\r\nContent-Type: application/dicom\r\n\r\n%s\r\n--B--\r\n", originals["5.dcm"])
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/dicom-web/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/dicom+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode >= 300 && res.StatusCode != http.StatusAccepted || bytes.Contains(answer, []byte("00081198")) {
		t.Fatalf("STOW-RS of the original: %s: %s", res.Status, answer)
	}
	waitUntil(t, 5*time.Second, "the server to log the same instance", func() bool {
		return strings.Contains(srvOut.String(), "instance already stored in another transfer syntax")
	})
	if strings.Contains(srvOut.String(), "conflicting instance set aside") {
		t.Errorf("the original was set aside as a conflict")
	}
}

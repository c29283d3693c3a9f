package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// goBuild builds a command of this module into dir, as `make build` and `make client` do.
func goBuild(t testing.TB, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// freePort is a port free on loopback for both TCP and UDP just now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestBinaryLiveConsultation runs a county as its IT person would, with the built binaries
// only: `sanping site/user/token` on a data directory that does not exist yet, then the server
// with its own flags and defaults (media on one UDP port on every interface, ICE-TCP, TURN);
// a clinic station uploads a study and asks for a consultation with its token; the doctor
// accepts and starts it over the REST API; the station joins with `sanping-station join` publishing
// video, the doctor joins with a browser session. The doctor receives the station's video,
// both start on the study's first image, and the doctor's next image reaches the station.
func TestBinaryLiveConsultation(t *testing.T) {
	bin := t.TempDir()
	sanping := goBuild(t, bin, "sanping", "../cmd/sanping")
	client := goBuild(t, bin, "sanping-station", "../cmd/sanping-station")
	data := filepath.Join(t.TempDir(), "county", "data") // not there yet
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cli := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, sanping, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sanping %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("", "site", "add", "-data", data, "-kind", "hospital", "-department", "放射科", "dahua", "大化县人民医院")
	cli("", "site", "add", "-data", data, "-kind", "township", "-parent", "dahua", "duyang", "都阳镇卫生院")
	cli("", "site", "add", "-data", data, "-kind", "clinic", "-parent", "duyang", "longshan", "龙山村卫生室")
	cli("Dahua-doctor-2026\n", "user", "add", "-data", data, "-roles", "doctor", "-institution", "dahua", "-name", "韦东平",
		"-title", "主治医师", "-specialty", "放射科", "-years", "8", "wei.dongping")
	tokenOut := cli("", "token", "create", "-data", data, "-institution", "longshan", "-role", "clinic", "龙山村卫生室-DR")
	token := regexp.MustCompile(`spt_[A-Za-z0-9_-]+`).FindString(tokenOut)
	if token == "" {
		t.Fatalf("no token printed: %s", tokenOut)
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

	call := func(c *http.Client, method, path string, hdr http.Header, body any, want int, into any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		for k, v := range hdr {
			req.Header[k] = v
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, b)
		}
		if into != nil {
			if err := json.Unmarshal(b, into); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
	}
	station := http.Header{"Authorization": {"Bearer " + token}}

	// The station stores a study of two images (STOW-RS) and asks the county for a reading.
	study, series := "1.2.826.0.1.3680043.10.77", "1.2.826.0.1.3680043.10.77.1"
	var body bytes.Buffer
	for i := 2; i >= 1; i-- { // stored in reverse: the room must open on instance number 1
		u := dicomtest.UIDs{Study: study, Series: series, SOP: fmt.Sprintf("%s.%d", series, i)}
		elems := append(dicomtest.BaseElems(u, "1.2.840.10008.5.1.4.1.1.1.1"),
			dicomtest.Str(dicomtest.TagOf(0x0010, 0x0010), "PN", "Lan^Xiuying"),
			dicomtest.Str(dicomtest.TagOf(0x0010, 0x0020), "LO", "LS-0042"),
			dicomtest.Str(dicomtest.TagOf(0x0020, 0x0011), "IS", "1"),
			dicomtest.Str(dicomtest.TagOf(0x0020, 0x0013), "IS", fmt.Sprint(i)))
		elems = append(elems, dicomtest.ImageElems(16, 16, 8, 0, "MONOCHROME2")...)
		elems = append(elems, dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OB", make([]byte, 256)))
		fmt.Fprintf(&body, "--B\r\nContent-Type: application/dicom\r\n\r\n%s\r\n", dicomtest.File{TS: "1.2.840.10008.1.2.1", Elems: elems}.Bytes())
	}
	body.WriteString("--B--\r\n")
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/dicom-web/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS with the station's token: %d", res.StatusCode)
	}
	var insts []struct {
		ID   int64  `json:"id"`
		Code string `json:"code"`
	}
	call(http.DefaultClient, "GET", "/api/institutions", station, nil, http.StatusOK, &insts)
	var county int64
	for _, in := range insts {
		if in.Code == "dahua" {
			county = in.ID
		}
	}
	var co struct {
		ID int64 `json:"id"`
	}
	call(http.DefaultClient, "POST", "/api/consultations", station, map[string]any{
		"patient": map[string]string{"id": "LS-0042", "name": "蓝秀英", "sex": "F"}, "studyUIDs": []string{study},
		"clinicalQuestion": "右下肺阴影？", "purpose": "明确诊断", "urgency": "routine", "targetInstitutionId": county, "consentConfirmed": true,
	}, http.StatusCreated, &co)

	// The doctor signs in as a browser does, accepts, and starts the consultation.
	jar, _ := cookiejar.New(nil)
	doc := &http.Client{Jar: jar}
	var login struct {
		CSRFToken string `json:"csrfToken"`
	}
	call(doc, "POST", "/api/login", nil, map[string]string{"username": "wei.dongping", "password": "Dahua-doctor-2026"}, http.StatusOK, &login)
	csrf := http.Header{"X-CSRF-Token": {login.CSRFToken}}
	var me struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	call(doc, "GET", "/api/session", nil, nil, http.StatusOK, &me)
	call(doc, "POST", fmt.Sprintf("/api/consultations/%d/accept", co.ID), csrf, map[string]any{"doctorId": me.User.ID, "scheduledAt": time.Now().Add(time.Hour)}, http.StatusOK, nil)
	call(doc, "POST", fmt.Sprintf("/api/consultations/%d/start", co.ID), csrf, nil, http.StatusOK, nil)

	// The station joins with the station program, publishing its camera.
	var joinOut testtool.Buffer
	join := exec.CommandContext(ctx, client, "join", "-server", base, "-consultation", fmt.Sprint(co.ID), "-token", token,
		"-video", testVideo, "-audio", testAudio)
	join.Stdout, join.Stderr = &joinOut, &joinOut
	if err := join.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		join.Process.Signal(os.Interrupt)
		join.Wait()
		if t.Failed() {
			t.Logf("sanping-station join output:\n%s", joinOut.String())
		}
	})

	// The doctor joins with the session cookie, through the server's whole handler chain.
	base2, _ := http.NewRequest("GET", base, nil)
	cookies := http.Header{}
	for _, c := range jar.Cookies(base2.URL) {
		cookies.Add("Cookie", c.Name+"="+c.Value)
	}
	doctor, err := live.Join(ctx, live.Config{URL: "ws" + strings.TrimPrefix(base, "http") + fmt.Sprintf("/api/consultations/%d/live", co.ID), Header: cookies, Name: "doctor"})
	if err != nil {
		t.Fatalf("the doctor joining the live room: %v", err)
	}
	defer doctor.Close()
	_, view := doctor.View()
	first := protocol.ImageRef{Study: study, Series: series, Instance: series + ".1"}
	if view.Image != first {
		t.Errorf("the room opened on %+v, want the study's first image %+v", view.Image, first)
	}
	waitUntil(t, 30*time.Second, "15 frames of the station's video at the doctor", func() bool {
		for _, tr := range doctor.Stats().Tracks {
			if tr.Kind == "video" && tr.Frames >= 15 {
				return true
			}
		}
		return false
	})
	// Next image: the driver steps from where the room opened, and the station hears it.
	next := first
	next.Instance = series + ".2"
	if _, err := doctor.SendOp(protocol.Op{Kind: protocol.OpImage, Image: &next}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-doctor.Ops():
		if a.Op.Kind != protocol.OpImage || *a.Op.Image != next {
			t.Fatalf("the doctor's next image came back as %+v", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the doctor's next image was not applied")
	}
	waitUntil(t, 30*time.Second, "the station to print the doctor's next image", func() bool {
		sc := bufio.NewScanner(strings.NewReader(joinOut.String()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"image"`) && strings.Contains(sc.Text(), next.Instance) {
				return true
			}
		}
		return false
	})
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

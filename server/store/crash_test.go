package store_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

const crashPassword = "crash-test-password"

// server is one run of the real server binary.
type server struct {
	cmd  *exec.Cmd
	url  string
	logs *testtool.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startBinary(t *testing.T, bin, data string) *server {
	t.Helper()
	port := freePort(t)
	logs := &testtool.Buffer{}
	// Live media and TURN off: their default ports would collide with other tests' servers.
	cmd := exec.Command(bin, "-addr", "127.0.0.1:"+strconv.Itoa(port), "-data", data, "-media-udp=", "-media-tcp=", "-turn=")
	cmd.Env = append(os.Environ(), "SANPING_ADMIN_PASSWORD="+crashPassword)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(s.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				// One authenticated request first: the argon2id check (slow under -race) is then
				// cached and the upload rounds spend their time uploading.
				if res, _, err := s.request("GET", "/studies?limit=1", "", "", nil); err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("first authenticated request: %v %v", err, statusOf(res))
				}
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server did not become healthy:\n%s", logs.String())
	return nil
}

func (s *server) kill(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
}

func (s *server) request(method, path, contentType, accept string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, s.url+"/dicom-web"+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.SetBasicAuth("admin", crashPassword)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	c := &http.Client{Timeout: 20 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// TestCrashDurability kills the real server with SIGKILL while clients upload, three times.
// Every instance acknowledged with 200 must come back byte-identical after the restart, and
// the index must agree with the files in blobs/.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the server binary")
	}
	bin := filepath.Join(t.TempDir(), "sanping-server")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/sanping/sanping/cmd/sanping")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[dicomtest.UIDs][]byte{} // instances acknowledged with 200
	var mu sync.Mutex
	// The clients' admin, made with the CLI before the first start as an installer would (the
	// bootstrap admin's password is temporary until changed).
	add := exec.Command(bin, "user", "add", "-data", data, "-roles", "admin", "admin")
	add.Stdin = strings.NewReader(crashPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("sanping user add: %v\n%s", err, out)
	}
	srv := startBinary(t, bin, data)
	for round := range 3 {
		// Upload from 4 clients until the server dies.
		var wg sync.WaitGroup
		var sent, ok int
		stop := make(chan struct{})
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.3680043.10.543.6.%d.%d", round, w)}
					u.Series = u.Study + ".1"
					u.SOP = fmt.Sprintf("%s.%d", u.Series, i)
					s := spec{u: u, patientName: []byte(fmt.Sprintf("Crash^R%dW%d", round, w)), instanceNumber: i}
					if i%4 == 3 { // some larger ones, so the kill can land mid-transfer
						s.extra = []dicomtest.E{dicomtest.RawE(0x00420011, "OB", bytes.Repeat([]byte{byte(i)}, 300<<10))}
					}
					b := s.bytes()
					var body bytes.Buffer
					body.WriteString("--CRASH\r\nContent-Type: application/dicom\r\n\r\n")
					body.Write(b)
					body.WriteString("\r\n--CRASH--\r\n")
					res, _, err := srv.request("POST", "/studies", `multipart/related; type="application/dicom"; boundary=CRASH`, "", body.Bytes())
					mu.Lock()
					sent++
					if err == nil && res.StatusCode == http.StatusOK {
						ok++
						acked[u] = b
					}
					mu.Unlock()
					if err != nil {
						return // the server is gone
					}
					if res.StatusCode != http.StatusOK {
						t.Errorf("STOW answered %d before the kill", res.StatusCode)
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		srv.kill(t)
		close(stop)
		wg.Wait()
		t.Logf("round %d: %d uploads, %d acknowledged before SIGKILL", round+1, sent, ok)

		srv = startBinary(t, bin, data)
		verify(t, srv, data, acked)
		if t.Failed() {
			t.Logf("server log:\n%s", srv.logs.String())
			return
		}
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
}

func verify(t *testing.T, srv *server, data string, acked map[dicomtest.UIDs][]byte) {
	t.Helper()
	// Every acknowledged instance is retrievable, byte for byte.
	for u, want := range acked {
		sop := u.SOP
		res, body, err := srv.request("GET", "/studies/"+u.Study+"/series/"+u.Series+"/instances/"+sop, "",
			`multipart/related; type="application/dicom"; transfer-syntax=*`, nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Errorf("acknowledged instance %s lost: %v %v", sop, err, statusOf(res))
			continue
		}
		_, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		p, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).NextPart()
		if err != nil {
			t.Errorf("%s: %v", sop, err)
			continue
		}
		got, _ := io.ReadAll(p)
		if !bytes.Equal(got, want) {
			t.Errorf("acknowledged instance %s differs after the crash (%d bytes, want %d)", sop, len(got), len(want))
		}
	}
	// The index holds exactly the files in blobs/.
	blobs := 0
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			blobs++
		}
		return nil
	})
	indexed := 0
	for offset := 0; ; offset += 1000 {
		res, body, err := srv.request("GET", "/instances?limit=1000&offset="+strconv.Itoa(offset), "", "application/dicom+json", nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("QIDO: %v %v", err, statusOf(res))
		}
		var page []json.RawMessage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		indexed += len(page)
		if len(page) < 1000 {
			break
		}
	}
	if indexed != blobs {
		t.Errorf("QIDO finds %d instances, blobs/ holds %d files", indexed, blobs)
	}
	if indexed < len(acked) {
		t.Errorf("QIDO finds %d instances, %d were acknowledged", indexed, len(acked))
	}
	tmp := 0
	filepath.WalkDir(filepath.Join(data, "tmp"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			tmp++
		}
		return nil
	})
	if tmp != 0 {
		t.Errorf("%d files left in tmp/ after restart", tmp)
	}
}

func statusOf(res *http.Response) any {
	if res == nil {
		return "no response"
	}
	return res.StatusCode
}

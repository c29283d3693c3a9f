// Package orthanc_test checks Sanping against Orthanc as a DICOMweb peer: Orthanc's DICOMweb
// plugin stores into Sanping (STOW-RS), searches it (QIDO-RS) and retrieves from it (WADO-RS),
// the way a county PACS would exchange studies with Sanping.
package orthanc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/internal/testtool"
)

const orthancBin = "/usr/sbin/Orthanc"

var pluginPaths = []string{
	"/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
	"/usr/lib/orthanc/plugins/libOrthancDicomWeb.so",
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

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode < 500 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer in 30 s", url)
}

func start(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

type orthanc struct {
	t    *testing.T
	base string
}

func (o orthanc) do(method, path string, body []byte) []byte {
	o.t.Helper()
	req, _ := http.NewRequest(method, o.base+path, bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		o.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return b
}

func TestOrthancAsDICOMwebPeer(t *testing.T) {
	testtool.Need(t, "apt-get install orthanc orthanc-dicomweb", orthancBin)
	plugin := ""
	for _, p := range pluginPaths {
		if _, err := os.Stat(p); err == nil {
			plugin = p
		}
	}
	if plugin == "" {
		testtool.Need(t, "apt-get install orthanc-dicomweb", pluginPaths[0])
	}
	root, _ := filepath.Abs("../..")
	dir := t.TempDir()
	bin := filepath.Join(dir, "sanping")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "sanping")).CombinedOutput(); err != nil {
		t.Fatalf("building the server: %v\n%s", err, out)
	}
	sp := freePort(t)
	// Orthanc signs in as an account of its own, made with the CLI as a county's IT would.
	add := exec.Command(bin, "user", "add", "-data", filepath.Join(dir, "data"), "-roles", "admin", "-name", "Orthanc peer", "orthanc-peer")
	add.Stdin = strings.NewReader("peer-secret\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("sanping user add: %v\n%s", err, out)
	}
	sanping := exec.Command(bin, "-addr", fmt.Sprintf("127.0.0.1:%d", sp), "-data", filepath.Join(dir, "data"), "-media-udp=", "-media-tcp=", "-turn=")
	start(t, "sanping", sanping)
	sanpingURL := fmt.Sprintf("http://127.0.0.1:%d", sp)
	waitHTTP(t, sanpingURL+"/healthz")

	op := freePort(t)
	cfg := map[string]any{
		"Name": "sanping-peer-test", "StorageDirectory": filepath.Join(dir, "orthanc"), "IndexDirectory": filepath.Join(dir, "orthanc"),
		"HttpPort": op, "DicomServerEnabled": false, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		"Plugins": []string{plugin},
		"DicomWeb": map[string]any{"Enable": true, "Root": "/dicom-web/",
			"Servers": map[string]any{"sanping": []string{sanpingURL + "/dicom-web/", "orthanc-peer", "peer-secret"}}},
	}
	cfgPath := filepath.Join(dir, "orthanc.json")
	b, _ := json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o600)
	start(t, "orthanc", exec.Command(orthancBin, cfgPath))
	o := orthanc{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", op)}
	waitHTTP(t, o.base+"/system")

	// Instances from the suyashkumar/dicom test data (CT, MR, PET, CR, deflated) into Orthanc.
	modDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(modDir)), "testdata", "*.dcm"))
	if len(files) < 5 {
		t.Fatalf("found %d test files", len(files))
	}
	sums := map[string]string{} // SOP Instance UID -> SHA-256 of the file
	var ids []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var r struct{ ID string }
		json.Unmarshal(o.do("POST", "/instances", data), &r)
		var tags struct {
			SOPInstanceUID string
		}
		json.Unmarshal(o.do("GET", "/instances/"+r.ID+"/simplified-tags", nil), &tags)
		sum := sha256.Sum256(data)
		sums[tags.SOPInstanceUID] = fmt.Sprintf("%x", sum)
		ids = append(ids, r.ID)
	}

	// Orthanc stores them into Sanping with STOW-RS.
	body, _ := json.Marshal(map[string]any{"Resources": ids})
	var stow struct{ InstancesCount string }
	json.Unmarshal(o.do("POST", "/dicom-web/servers/sanping/stow", body), &stow)
	if stow.InstancesCount != fmt.Sprint(len(ids)) {
		t.Fatalf("Orthanc sent %s instances, want %d", stow.InstancesCount, len(ids))
	}

	// Orthanc searches Sanping (QIDO-RS) and sees every study.
	var studies []map[string]json.RawMessage
	json.Unmarshal(o.do("POST", "/dicom-web/servers/sanping/get", []byte(`{"Uri":"/studies"}`)), &studies)
	studyUIDs := map[string]bool{}
	for _, s := range studies {
		var a struct{ Value []string }
		json.Unmarshal(s["0020000D"], &a)
		if len(a.Value) == 1 {
			studyUIDs[a.Value[0]] = true
		}
	}
	if len(studyUIDs) == 0 {
		t.Fatalf("QIDO through Orthanc found no study: %s", o.do("POST", "/dicom-web/servers/sanping/get", []byte(`{"Uri":"/studies"}`)))
	}

	// Sanping holds the bytes Orthanc had, unchanged.
	for sop, sum := range sums {
		if got := sanpingFileSum(t, sanpingURL, sop); got != sum {
			t.Errorf("instance %s: Sanping holds SHA-256 %s, the original is %s", sop, got, sum)
		}
	}

	// Orthanc forgets everything, then retrieves the studies back from Sanping (WADO-RS).
	for _, id := range ids {
		o.do("DELETE", "/instances/"+id, nil)
	}
	var res []map[string]string
	for uid := range studyUIDs {
		res = append(res, map[string]string{"Study": uid})
	}
	body, _ = json.Marshal(map[string]any{"Resources": res})
	var got struct{ ReceivedInstancesCount string }
	json.Unmarshal(o.do("POST", "/dicom-web/servers/sanping/retrieve", body), &got)
	if got.ReceivedInstancesCount != fmt.Sprint(len(sums)) {
		t.Fatalf("Orthanc retrieved %s instances from Sanping, want %d", got.ReceivedInstancesCount, len(sums))
	}
	var back []string
	json.Unmarshal(o.do("GET", "/instances", nil), &back)
	if len(back) != len(sums) {
		t.Fatalf("Orthanc holds %d instances after the retrieve, want %d", len(back), len(sums))
	}
	for _, id := range back {
		var tags struct{ SOPInstanceUID, TransferSyntax string }
		json.Unmarshal(o.do("GET", "/instances/"+id+"/simplified-tags", nil), &tags)
		if _, ok := sums[tags.SOPInstanceUID]; !ok {
			t.Errorf("Orthanc retrieved an unknown instance %s", tags.SOPInstanceUID)
		}
	}
}

// sanpingFileSum fetches one instance from Sanping with transfer-syntax=* and hashes it.
func sanpingFileSum(t *testing.T, base, sop string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", base+"/dicom-web/instances?SOPInstanceUID="+sop, nil)
	req.SetBasicAuth("orthanc-peer", "peer-secret")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var found []map[string]struct {
		Value []string
	}
	json.NewDecoder(res.Body).Decode(&found)
	res.Body.Close()
	if len(found) != 1 {
		t.Fatalf("QIDO for %s found %d instances", sop, len(found))
	}
	url := found[0]["00081190"].Value[0]
	req, _ = http.NewRequest("GET", url, nil)
	req.SetBasicAuth("orthanc-peer", "peer-secret")
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	// One part: the file sits between the part headers' blank line and the closing boundary.
	i := bytes.Index(body, []byte("\r\n\r\n"))
	j := bytes.LastIndex(body, []byte("\r\n--"))
	if res.StatusCode != 200 || i < 0 || j < i {
		t.Fatalf("retrieve %s: %d", url, res.StatusCode)
	}
	return fmt.Sprintf("%x", sha256.Sum256(body[i+4:j]))
}

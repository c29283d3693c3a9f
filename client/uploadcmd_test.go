package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/upload"
	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/server/dcm"
	"golang.org/x/text/language"
)

func TestUploadCommand(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	dir := t.TempDir()
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("s%d", i))
		os.MkdirAll(d, 0o755)
		b := uploadtest.Part10(uploadtest.UID(7), uploadtest.UID(7, 1), uploadtest.UID(7, 1, i), 2000)
		if err := os.WriteFile(filepath.Join(d, "IM0"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(dir, "bad.dcm")
	os.WriteFile(bad, append(append(make([]byte, 128), "DICM"...), "garbage garbage"...), 0o644)
	journal := t.TempDir()

	var out, errs strings.Builder
	code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, dir}, &out, &errs)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"bundle 1/1: 4 files", "4 files: 3 stored, 0 already stored, 0 conflicts, 1 failed", "failed " + bad + ": "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errs.String(), "1 of 4 files not stored") {
		t.Errorf("stderr: %s", errs.String())
	}

	// Good files only, again: all already stored, exit 0.
	os.Remove(bad)
	out.Reset()
	errs.Reset()
	if code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, dir}, &out, &errs); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "3 files: 0 stored, 3 already stored") {
		t.Errorf("%s", out.String())
	}

	// Flags override the saved login; a wrong token ends the job.
	errs.Reset()
	if code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, "-token", "spt_wrong", dir}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "401") {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
}

func TestUploadCommandUsage(t *testing.T) {
	config := filepath.Join(t.TempDir(), "none.json")
	for _, args := range [][]string{
		{"upload", "-config", config, "x"},                                                // no login
		{"upload", "-config", config, "-server", "http://127.0.0.1:1", "-token", "spt_x"}, // no path
	} {
		var out, errs strings.Builder
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, errs.String())
		}
	}
}

func TestProgressLine(t *testing.T) {
	pr := upload.Progress{Files: 10, TotalFiles: 100, Bytes: 5 << 20, TotalBytes: 20 << 20, Bundle: 1, Bundles: 2}
	for _, tc := range []struct {
		lang language.Tag
		want string
	}{
		{language.English, "[#####...............] 10/100 files  5.0/20.0 MB  1.0 MB/s  ETA 15s"},
		{language.SimplifiedChinese, "[#####...............] 10/100 个文件  5.0/20.0 MB  1.0 MB/秒  预计还需 15s"},
	} {
		if got := progressLine(msg.New(tc.lang), pr, 5<<20, 5*time.Second); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// TestUploadSaysWhatToDo: in Chinese by default, every file not sent is named with what it
// is and what to do, and an error that ends the job says what happened and what to do next,
// with the details for support on a line of their own.
func TestUploadSaysWhatToDo(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	config := loginFile(t, srv)
	good := uploadtest.Part10(uploadtest.UID(8), uploadtest.UID(8, 1), uploadtest.UID(8, 1, 1), 2000)
	files := map[string][]byte{
		"IM0":        good,
		"empty.dcm":  nil,
		"photo.dcm":  {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'},
		"notes.txt":  []byte("检查说明：胸片\n"),
		"report.pdf": []byte("%PDF-1.4\n..."),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs strings.Builder
	code := run(context.Background(), []string{"-lang", "zh", "upload", "-config", config, "-journal", t.TempDir(),
		filepath.Join(dir, "IM0"), filepath.Join(dir, "empty.dcm"), filepath.Join(dir, "photo.dcm"), filepath.Join(dir, "notes.txt"), filepath.Join(dir, "report.pdf")}, &out, &errs)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		"共 5 个文件：新存储 1，已存储 0，冲突 0，失败 4",
		"失败 " + filepath.Join(dir, "empty.dcm") + "：空文件：请从设备重新导出",
		"失败 " + filepath.Join(dir, "photo.dcm") + "：是普通图片（JPEG 或 PNG），不是 DICOM：请在设备上用 DICOM 发送",
		"失败 " + filepath.Join(dir, "notes.txt") + "：是文本文件",
		"失败 " + filepath.Join(dir, "report.pdf") + "：是 PDF 文档",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if want := "4 个文件（共 5 个）没有存入服务器"; !strings.Contains(errs.String(), want) {
		t.Errorf("stderr lacks %q: %s", want, errs.String())
	}

	// A revoked token: what to do, then the details.
	errs.Reset()
	code = run(context.Background(), []string{"-lang", "zh", "upload", "-config", config, "-journal", t.TempDir(), "-token", "spt_revoked", filepath.Join(dir, "IM0")}, &out, &errs)
	if code != 1 || !strings.Contains(errs.String(), "服务器不接受本站的令牌") || !strings.Contains(errs.String(), "\n  详细信息：") || !strings.Contains(errs.String(), "401") {
		t.Errorf("revoked token: exit %d: %s", code, errs.String())
	}

	// No server at the address: what to do, the tries, then the details; in English on request.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	for _, tc := range []struct{ lang, want string }{
		{"zh", "连接不上服务器（已尝试 2 次）。请检查本机网络"},
		{"en", "Cannot reach the server (tried 2 times). Check this PC's network"},
	} {
		errs.Reset()
		code = run(context.Background(), []string{"-lang", tc.lang, "upload", "-config", config, "-journal", t.TempDir(), "-server", gone, "-attempts", "2", filepath.Join(dir, "IM0")}, &out, &errs)
		if code != 1 || !strings.Contains(errs.String(), tc.want) {
			t.Errorf("-lang %s, no server: exit %d: %s", tc.lang, code, errs.String())
		}
	}

	// A command line that makes no sense, in Chinese.
	errs.Reset()
	if code := run(context.Background(), []string{"-lang", "zh", "upload", "-config", config}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "请给出要上传的文件或文件夹") {
		t.Errorf("no path: exit %d: %s", code, errs.String())
	}
}

// TestUploadCommandCompress: `upload` sends a native image as JPEG-LS lossless, which the
// server stores as such; with -compress=false it stores the file as it is.
func TestUploadCommandCompress(t *testing.T) {
	mod, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		t.Fatalf("locating suyashkumar/dicom testdata: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(mod)), "testdata", "3.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags  []string
		syntax string
	}{{nil, dcm.JPEGLSLossless}, {[]string{"-compress=false"}, dcm.ExplicitVRLittleEndian}} {
		srv := uploadtest.Start(t, nil)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "IM0"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errs strings.Builder
		args := append(append([]string{"upload", "-config", loginFile(t, srv), "-journal", t.TempDir()}, c.flags...), dir)
		if code := run(context.Background(), args, &out, &errs); code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", c.flags, code, out.String(), errs.String())
		}
		in, err := dcm.Parse(bytes.NewReader(src), int64(len(src)))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := srv.Store.Instances(context.Background(), in.StudyInstanceUID, "", "")
		if err != nil || len(stored) != 1 || stored[0].TransferSyntax != c.syntax {
			t.Errorf("%v: stored %+v (%v), want one in %s", c.flags, stored, err, c.syntax)
		}
	}
}

package client

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

// TestStatusInChinese: status speaks Chinese by default, and a token the server refuses is
// said with what to do, not as an HTTP status.
func TestStatusInChinese(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	config := filepath.Join(dir, "client.json")
	if err := saveStationConfig(config, stationConfig{Server: srv.URL, Token: "spt_revoked"}); err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	args := []string{"-lang", "zh", "status", "-config", config, "-journal", filepath.Join(dir, "journal"), "-spool", filepath.Join(dir, "spool")}
	if code := run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{
		"上传队列：    0 个数据包，0 个文件，0.0 MB 等待上传",
		"最近一次成功：从未",
		"与服务器连接：不通：" + srv.URL + "（服务器不接受本站的令牌",
		"暂存：        " + filepath.Join(dir, "spool") + " 中没有状态信息",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	// The same in English when asked.
	out.Reset()
	if code := run(context.Background(), append([]string{"-lang", "en"}, args[2:]...), &out, &errs); code != 0 ||
		!strings.Contains(out.String(), "The server refuses this station's token") || !strings.Contains(out.String(), "last success: never") {
		t.Errorf("exit %d:\n%s", code, out.String())
	}
}

// TestUnknownLanguage: a -lang that names no language is a usage error, said before anything.
func TestUnknownLanguage(t *testing.T) {
	var out, errs strings.Builder
	if code := run(context.Background(), []string{"-lang", "xx-notalanguage-at-all", "status"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "unknown language") {
		t.Errorf("exit %d: %s", code, errs.String())
	}
}

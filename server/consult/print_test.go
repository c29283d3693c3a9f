package consult_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/consult"
)

func TestPrintHTML(t *testing.T) {
	e := newEnv(t)
	id := e.inState(consult.Reporting)
	_, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "<script>alert(1)</script>\n右下肺见8mm实性结节。", "考虑良性结节 & 随访。", "三个月后复查CT。")
	e.must(err)

	var draft strings.Builder
	e.must(e.svc.PrintHTML(e.ctx, &draft, id))
	if !strings.Contains(draft.String(), "草稿 未签名 / DRAFT – not signed") {
		t.Error("a draft prints without the DRAFT banner")
	}

	_, err = e.svc.Sign(e.ctx, e.doctor, id, password)
	e.must(err)
	_, err = e.svc.AddAddendum(e.ctx, e.doctor, id, "复查已预约。", password)
	e.must(err)
	r, err := e.svc.Report(e.ctx, id)
	e.must(err)
	var b strings.Builder
	e.must(e.svc.PrintHTML(e.ctx, &b, id))
	page := b.String()
	signedAt := r.SignedAt.In(time.FixedZone("UTC+8", 8*3600)).Format("2006-01-02 15:04:05")
	for _, want := range []string{
		`<html lang="zh-CN">`, "@media print", "size: A4",
		"远程会诊报告", "Teleconsultation report", "患者 / Patient", "检查所见", "Findings", "诊断意见", "Impression",
		"建议", "Recommendations", "签名医生 / Signed by", "签名时间 / Signed at", "补充说明", "Addenda",
		"韦东平", "GX0451203", "男 / Male", "1965-03-02", "平果市新安镇卫生院", "平果市人民医院",
		"右下肺结节，性质待定。", "黄志强", "主任医师", signedAt, r.SHA256, r.Addenda[0].SHA256, "复查已预约。",
		"&lt;script&gt;alert(1)&lt;/script&gt;", "考虑良性结节 &amp; 随访。",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, unwanted := range []string{"<script>", "DRAFT – not signed", "http://", "https://"} {
		if strings.Contains(page, unwanted) {
			t.Errorf("page contains %q", unwanted)
		}
	}

	if err := e.svc.PrintHTML(e.ctx, &b, e.create()); !errors.Is(err, consult.ErrNotFound) {
		t.Errorf("print without a report: %v, want ErrNotFound", err)
	}
}

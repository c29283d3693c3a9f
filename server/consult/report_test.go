package consult_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/consult"
)

func TestReportSigning(t *testing.T) {
	e := newEnv(t)
	id := e.inState(consult.Reporting)

	if _, err := e.svc.Sign(e.ctx, e.doctor, id, password); !errors.Is(err, consult.ErrConflict) {
		t.Errorf("sign without a draft: %v, want ErrConflict", err)
	}
	if _, err := e.svc.SaveDraft(e.ctx, e.admin, id, "x", "y", "z"); !errors.Is(err, consult.ErrForbidden) {
		t.Errorf("draft by another doctor: %v, want ErrForbidden", err)
	}
	if _, err := e.svc.SaveDraft(e.ctx, e.doctor, id, strings.Repeat("影", 20001), "", ""); !errors.Is(err, consult.ErrInvalid) {
		t.Errorf("findings too long: %v, want ErrInvalid", err)
	}
	_, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "右下肺见8mm实性结节。", "", "")
	e.must(err)
	if _, err := e.svc.Sign(e.ctx, e.doctor, id, password); !errors.Is(err, consult.ErrInvalid) {
		t.Errorf("sign without impression: %v, want ErrInvalid", err)
	}
	_, err = e.svc.SaveDraft(e.ctx, e.doctor, id, "右下肺见8mm实性结节，边缘光整。", "考虑良性结节。", "三个月后复查CT。")
	e.must(err)

	n := e.auditLen()
	if _, err := e.svc.Sign(e.ctx, e.doctor, id, "wrong"); !errors.Is(err, consult.ErrBadPassword) {
		t.Fatalf("wrong password: %v, want ErrBadPassword", err)
	}
	r, err := e.svc.Report(e.ctx, id)
	e.must(err)
	if r.Signed() || e.get(id).State != consult.Reporting {
		t.Fatalf("signed despite a wrong password: %+v", r)
	}
	got := e.entries(id)
	if last := got[len(got)-1]; e.auditLen() != n+1 || last.Action != "report.sign" || last.Outcome != "failure" {
		t.Errorf("wrong password audited as %+v", last)
	}
	if _, err := e.svc.Sign(e.ctx, e.admin, id, password); !errors.Is(err, consult.ErrForbidden) {
		t.Errorf("sign by another doctor: %v, want ErrForbidden", err)
	}

	r, err = e.svc.Sign(e.ctx, e.doctor, id, password)
	e.must(err)
	if !r.Signed() || e.get(id).State != consult.Signed {
		t.Fatalf("not signed: %+v", r)
	}
	if _, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "改", "改", "改"); !errors.Is(err, consult.ErrConflict) ||
		!strings.Contains(err.Error(), "add an addendum") {
		t.Errorf("draft after signing: %v", err)
	}
	if _, err := e.db.ExecContext(e.ctx, `UPDATE reports SET impression = '恶性肿瘤' WHERE consultation_id = ?`, id); err == nil ||
		!strings.Contains(err.Error(), "signed") {
		t.Errorf("direct UPDATE of a signed report: %v", err)
	}

	if _, err := e.svc.AddAddendum(e.ctx, e.doctor, id, "补充", "wrong"); !errors.Is(err, consult.ErrBadPassword) {
		t.Errorf("addendum with a wrong password: %v", err)
	}
	if _, err := e.svc.AddAddendum(e.ctx, e.admin, id, "补充", password); !errors.Is(err, consult.ErrForbidden) {
		t.Errorf("addendum by another doctor: %v", err)
	}
	a1, err := e.svc.AddAddendum(e.ctx, e.doctor, id, "复核原始图像后，结节边缘可见少许毛刺，建议两个月后复查。", password)
	e.must(err)
	_, err = e.svc.Close(e.ctx, e.clinic, id)
	e.must(err)
	a2, err := e.svc.AddAddendum(e.ctx, e.doctor, id, "患者已预约复查。", password)
	e.must(err)
	if len(a1.SHA256) != 64 || a1.SHA256 == a2.SHA256 || a1.SHA256 == r.SHA256 || a1.DoctorName != "黄志强" {
		t.Errorf("addenda: %+v %+v", a1, a2)
	}
	r, err = e.svc.Report(e.ctx, id)
	e.must(err)
	if len(r.Addenda) != 2 || r.Addenda[0].SHA256 != a1.SHA256 || r.Addenda[1].Text != "患者已预约复查。" {
		t.Errorf("report addenda: %+v", r.Addenda)
	}
	e.must(e.svc.VerifyReport(e.ctx, id))
	for _, q := range []string{
		`UPDATE report_addenda SET text = '无' WHERE consultation_id = ?`,
		`DELETE FROM report_addenda WHERE consultation_id = ?`,
	} {
		if _, err := e.db.ExecContext(e.ctx, q, id); err == nil {
			t.Errorf("%s: allowed", q)
		}
	}
	var actions []string
	for _, en := range e.entries(id) {
		actions = append(actions, en.Action+"/"+en.Outcome)
	}
	want := "report.sign/failure report.sign/success consultation.sign/success report.addendum/failure " +
		"report.addendum/success consultation.close/success report.addendum/success"
	if got := strings.Join(actions, " "); !strings.HasSuffix(got, want) {
		t.Errorf("audit actions:\n%s\nwant suffix\n%s", got, want)
	}
}

// Changes made behind the triggers' back show in VerifyReport.
func TestVerifyReportDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sql    []string
		expect string
	}{
		{"impression", []string{
			`DROP TRIGGER reports_signed_fixed`,
			`UPDATE reports SET impression = '恶性肿瘤' WHERE consultation_id = ?`,
		}, "report"},
		{"patient", []string{
			`DROP TRIGGER consultations_request_fixed`,
			`UPDATE consultations SET patient_name = '韦东升' WHERE id = ?`,
		}, "report"},
		{"addendum text", []string{
			`DROP TRIGGER report_addenda_no_update`,
			`UPDATE report_addenda SET text = '无异常' WHERE consultation_id = ?`,
		}, "addendum"},
		{"addendum removed", []string{
			`DROP TRIGGER report_addenda_no_delete`,
			`DELETE FROM report_addenda WHERE id = (SELECT min(id) FROM report_addenda WHERE consultation_id = ?)`,
		}, "addendum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.inState(consult.Signed)
			for _, text := range []string{"第一条补充。", "第二条补充。"} {
				_, err := e.svc.AddAddendum(e.ctx, e.doctor, id, text, password)
				e.must(err)
			}
			e.must(e.svc.VerifyReport(e.ctx, id))
			for _, q := range tc.sql {
				var args []any
				if strings.Contains(q, "?") {
					args = append(args, id)
				}
				if _, err := e.db.ExecContext(e.ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			err := e.svc.VerifyReport(e.ctx, id)
			if !errors.Is(err, consult.ErrTampered) || !strings.Contains(err.Error(), tc.expect) {
				t.Errorf("after changing the %s: %v, want ErrTampered about the %s", tc.name, err, tc.expect)
			}
		})
	}

	e := newEnv(t)
	id := e.inState(consult.Reporting)
	_, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "", "良性", "")
	e.must(err)
	if err := e.svc.VerifyReport(e.ctx, id); !errors.Is(err, consult.ErrConflict) {
		t.Errorf("verify a draft: %v, want ErrConflict", err)
	}
}

func TestDraftOnlyWhileLiveOrReporting(t *testing.T) {
	e := newEnv(t)
	for _, st := range []consult.State{consult.Requested, consult.Scheduled, consult.Cancelled} {
		id := e.inState(st)
		if _, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "a", "b", "c"); !errors.Is(err, consult.ErrConflict) {
			t.Errorf("draft while %s: %v, want ErrConflict", st, err)
		}
	}
	id := e.inState(consult.Live)
	r, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "a", "b", "c")
	e.must(err)
	r2, err := e.svc.SaveDraft(e.ctx, e.doctor, id, "a2", "b2", "c2")
	e.must(err)
	if r2.Findings != "a2" || !r2.DraftedAt.After(r.DraftedAt) {
		t.Errorf("second draft: %+v", r2)
	}
	if _, err := e.svc.AddAddendum(e.ctx, e.doctor, id, "补充", password); !errors.Is(err, consult.ErrConflict) {
		t.Errorf("addendum to a draft: %v, want ErrConflict", err)
	}
}

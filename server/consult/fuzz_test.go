package consult

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRequest feeds consultation requests as a clinic's browser would send them (JSON) to
// the validation: no panic, and whatever passes is valid and stays valid when checked again.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"patient":{"id":"P1","name":"韦东平","sex":"M","birthDate":"19900101"},"studyUIDs":["1.2.3"],"clinicalQuestion":"右下肺阴影？","purpose":"诊断","urgency":"urgent","targetInstitutionId":1,"consentConfirmed":true}`))
	f.Add([]byte(`{"patient":{"name":"x"},"studyUIDs":["1.2","1.2"],"clinicalQuestion":"q","purpose":"p","urgency":"routine","targetInstitutionId":1,"consentConfirmed":true}`))
	f.Add([]byte(`{"patient":{"name":"\u0000"},"studyUIDs":[".."],"urgency":"x"}`))
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Request
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if dec.Decode(&r) != nil {
			return
		}
		if err := r.normalize(now); err != nil {
			return
		}
		if !utf8.ValidString(r.Patient.Name) || r.Patient.Name == "" || !r.ConsentConfirmed || r.TargetInstitutionID <= 0 {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		for _, uid := range r.StudyUIDs {
			if !validUID(uid) {
				t.Fatalf("accepted UID %q", uid)
			}
		}
		again := r
		if err := again.normalize(now); err != nil {
			t.Fatalf("a normalized request fails a second check: %v", err)
		}
	})
}

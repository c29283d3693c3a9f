package upload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Batches of the check: at most checkBatch UIDs, and at most checkQueryBytes of them in one
// URL (reverse proxies refuse long request lines: nginx's default buffer is 8 KB).
const (
	checkBatch      = 200
	checkQueryBytes = 6000
)

// skipStored asks the server which of the files' instances it has (by the SOP Instance UID of
// their File Meta Information) and returns the others, to send, and the files it has, as
// already stored. A failed check is logged and everything is sent: the server dedups anyway.
// The error is ctx's only.
func (u *uploader) skipStored(ctx context.Context, files []candidate) (send []candidate, stored []FileOutcome, err error) {
	var uids []string
	seen := map[string]bool{}
	for _, c := range files {
		if c.uid != "" && !seen[c.uid] {
			seen[c.uid] = true
			uids = append(uids, c.uid)
		}
	}
	have := map[string]string{} // SOP Instance UID -> Study Instance UID
	// A few tries only: the check saves bytes, it is not worth waiting long for.
	r := &retrier{cfg: &Config{MaxAttempts: 3, MinBackoff: u.cfg.MinBackoff, MaxBackoff: u.cfg.MaxBackoff}}
	for len(uids) > 0 {
		n, size := 0, 0
		for n < len(uids) && n < checkBatch && (n == 0 || size+len(uids[n])+1 <= checkQueryBytes) {
			size += len(uids[n]) + 1
			n++
		}
		found, err := u.queryInstances(ctx, uids[:n])
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if err = r.wait(ctx, err); err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				u.cfg.Logger.Warn("upload: could not ask the server which instances it has; sending every file", "err", err)
				break
			}
			continue
		}
		r.attempts = 0
		for sop, study := range found {
			have[sop] = study
		}
		uids = uids[n:]
	}
	for _, c := range files {
		if study, ok := have[c.uid]; ok && c.uid != "" {
			stored = append(stored, FileOutcome{Path: c.path, SOPInstanceUID: c.uid, StudyInstanceUID: study, Outcome: OutcomeAlreadyStored})
		} else {
			send = append(send, c)
		}
	}
	return send, stored, nil
}

// queryInstances is a QIDO-RS search for instances by a list of SOP Instance UIDs (PS3.18
// 8.3.4.1: UID list matching); it returns the ones found with their Study Instance UID.
func (u *uploader) queryInstances(ctx context.Context, uids []string) (map[string]string, error) {
	q := url.Values{}
	q.Set("SOPInstanceUID", strings.Join(uids, ","))
	q.Set("includefield", jsonKey(tag.SOPInstanceUID)+","+jsonKey(tag.StudyInstanceUID))
	q.Set("limit", strconv.Itoa(len(uids)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u.cfg.Server, "/")+"/dicom-web/instances?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/dicom+json")
	req.Header.Set("Authorization", "Bearer "+u.cfg.Token)
	resp, err := u.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil // no match (PS3.18 10.6.3.2 allows 204)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &StatusError{Code: resp.StatusCode, Detail: problemDetail(body)}
	}
	// PS3.18 F.2: an array of objects keyed by tag, each attribute {"vr": ..., "Value": [...]}.
	var objects []map[string]jsonAttribute
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&objects); err != nil {
		return nil, fmt.Errorf("reading the search's answer: %w", err)
	}
	found := map[string]string{}
	for _, o := range objects {
		if sop := o[jsonKey(tag.SOPInstanceUID)].first(); sop != "" {
			found[sop] = o[jsonKey(tag.StudyInstanceUID)].first()
		}
	}
	return found, nil
}

// jsonAttribute is an attribute of the DICOM JSON model (PS3.18 F.2.2).
type jsonAttribute struct {
	Value []json.RawMessage `json:"Value"`
}

// first is the attribute's first value if it is a string.
func (a jsonAttribute) first() string {
	var s string
	if len(a.Value) > 0 && json.Unmarshal(a.Value[0], &s) == nil {
		return s
	}
	return ""
}

// jsonKey is a tag as the DICOM JSON model and QIDO-RS name it: "0020000D".
func jsonKey(t tag.Tag) string { return fmt.Sprintf("%04X%04X", t.Group, t.Element) }

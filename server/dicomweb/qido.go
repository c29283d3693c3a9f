package dicomweb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/store"
)

// Query parameters that are not attribute keys (PS3.18 8.3.4).
var qidoParams = map[string]bool{"limit": true, "offset": true, "includefield": true, "fuzzymatching": true, "accept": true, "charset": true}

// keyword resolves a QIDO attribute key given as a keyword ("PatientName") or a tag ("00100010").
func keyword(k string) (string, string, bool) {
	if len(k) == 8 && strings.Trim(strings.ToUpper(k), "0123456789ABCDEF") == "" {
		g, _ := strconv.ParseUint(k[:4], 16, 16)
		e, _ := strconv.ParseUint(k[4:], 16, 16)
		t := tag.Tag{Group: uint16(g), Element: uint16(e)}
		if info, err := tag.Find(t); err == nil {
			return info.Keyword, strings.ToUpper(k), true
		}
		return "", strings.ToUpper(k), true // a valid tag without a keyword (private)
	}
	info, err := tag.FindByKeyword(k)
	if err != nil {
		return "", "", false
	}
	return info.Keyword, fmt.Sprintf("%04X%04X", info.Tag.Group, info.Tag.Element), true
}

// qido answers Search Transactions (PS3.18 10.6) at one level.
func (s *Service) qido(level store.Level) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		study, series, _, ok := uids(w, r)
		if !ok {
			return
		}
		if !acceptsJSON(r.Header.Get("Accept")) {
			problem(w, http.StatusNotAcceptable, "search results are application/dicom+json")
			return
		}
		q := store.Query{Level: level, StudyUID: study, SeriesUID: series, Match: map[string]string{}, Limit: s.cfg.MaxResults}
		if p, ok := auth.FromContext(r.Context()); ok {
			q.Scope, q.ScopeArgs = auth.StudyScope(p)
		} else {
			problem(w, http.StatusUnauthorized, "authentication required")
			return
		}
		include := map[string]bool{} // tags to add from stored metadata
		includeAll := false
		var unsupported []string
		for k, vals := range r.URL.Query() {
			lk := strings.ToLower(k)
			switch lk {
			case "limit", "offset":
				n, err := strconv.Atoi(vals[0])
				if err != nil || n < 0 {
					problem(w, http.StatusBadRequest, fmt.Sprintf("%s=%q is not a non-negative integer", k, vals[0]))
					return
				}
				if lk == "limit" {
					if n > 0 && n < q.Limit {
						q.Limit = n
					}
				} else {
					q.Offset = n
				}
				continue
			case "fuzzymatching":
				q.Fuzzy = strings.EqualFold(vals[0], "true")
				continue
			case "includefield":
				for _, v := range vals {
					for _, f := range strings.Split(v, ",") {
						f = strings.TrimSpace(f)
						if f == "all" {
							includeAll = true
							continue
						}
						if _, t, ok := keyword(f); ok {
							include[t] = true
						} else if f != "" {
							problem(w, http.StatusBadRequest, fmt.Sprintf("includefield %q is neither a keyword nor a tag", f))
							return
						}
					}
				}
				continue
			}
			if qidoParams[lk] {
				continue
			}
			kw, t, ok := keyword(k)
			if !ok {
				problem(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q is neither a DICOM keyword, a tag nor a QIDO-RS parameter", k))
				return
			}
			include[t] = true // matching keys are returned (PS3.18 10.6.3.3.1)
			if kw != "" && store.Matchable(kw, level) {
				q.Match[kw] = vals[0]
			} else if vals[0] != "" {
				unsupported = append(unsupported, k)
			}
		}
		rows, more, err := s.st.Search(r.Context(), q)
		if err != nil {
			s.storeError(w, r, err, "search")
			return
		}
		base := s.baseURL(r)
		out := make([][]byte, 0, len(rows))
		samples := map[int64]map[string]json.RawMessage{}
		for i := range rows {
			o := s.qidoObject(level, &rows[i], base, study == "")
			if len(include) > 0 || includeAll {
				if err := s.addIncluded(r.Context(), o, level, &rows[i], include, includeAll, samples, base); err != nil {
					s.storeError(w, r, err, "search")
					return
				}
			}
			out = append(out, o.encode())
		}
		if len(unsupported) > 0 {
			w.Header().Add("Warning", fmt.Sprintf(`299 sanping "The following attributes are not supported for matching and were ignored: %s"`, asciiOnly(strings.Join(unsupported, ", "))))
		}
		if more {
			w.Header().Add("Warning", `299 sanping "The number of results exceeded the maximum supported by the server. Additional results can be requested."`)
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		// PS3.18 10.6.3.2: no match is 200 with an empty array ([]), as dicomweb-client and
		// OHIF expect; 204 is also allowed but breaks clients that always parse the body.
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, b := range out {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(b)
		}
		buf.WriteByte(']')
		w.Write(buf.Bytes())
		// A search shows patient names and IDs: recorded with the query as the object.
		s.record(r, "patient.search", "qido:"+r.URL.Path+"?"+r.URL.RawQuery, "success")
	}
}

func acceptsJSON(h string) bool {
	if h == "" {
		return true
	}
	for _, m := range parseAccept(h) {
		switch m.mediaType {
		case "application/dicom+json", "application/json", "*/*", "application/*":
			return true
		}
	}
	return false
}

// qidoObject builds one result. withStudy adds the study's attributes to series and instance
// results of searches not scoped to one study, so a client can tell the studies apart.
func (s *Service) qidoObject(level store.Level, row *store.Row, base string, withStudy bool) *object {
	o := newObject()
	st := row.Study
	o.str("00080005", "CS", "ISO_IR 192") // all JSON is UTF-8
	o.str("00080056", "CS", "ONLINE")     // InstanceAvailability: everything is on local disk
	o.str("0020000D", "UI", st.StudyUID)
	studyURL := base + "/studies/" + st.StudyUID
	if level == store.StudyLevel || withStudy {
		o.str("00080020", "DA", st.StudyDate)
		o.str("00080030", "TM", st.StudyTime)
		o.str("00080050", "SH", st.Accession)
		o.str("00080061", "CS", splitMulti(st.Modalities)...)
		o.pn("00080090", st.Referring)
		o.str("00081030", "LO", st.Desc)
		o.str("00081190", "UR", studyURL)
		o.pn("00100010", st.PatientName)
		o.str("00100020", "LO", st.PatientID)
		o.str("00100030", "DA", st.BirthDate)
		o.str("00100040", "CS", st.Sex)
		o.str("00200010", "SH", st.StudyID)
		o.ints("00201206", "IS", st.NumSeries)
		o.ints("00201208", "IS", st.NumInstances)
		if level == store.StudyLevel {
			return o
		}
	}
	se := row.Series
	seriesURL := studyURL + "/series/" + se.SeriesUID
	o.str("0020000E", "UI", se.SeriesUID)
	if level == store.SeriesLevel {
		o.str("00080060", "CS", se.Modality)
		o.str("00080021", "DA", se.SeriesDate)
		o.str("00080031", "TM", se.SeriesTime)
		o.str("0008103E", "LO", se.Desc)
		o.str("00180015", "CS", se.BodyPart)
		o.nullInt("00200011", "IS", se.SeriesNumber.Int64, se.SeriesNumber.Valid)
		o.ints("00201209", "IS", se.NumInstances)
		o.str("00400244", "DA", se.PPSDate)
		o.str("00400245", "TM", se.PPSTime)
		o.str("00081190", "UR", seriesURL)
		return o
	}
	in := row.Instance
	o.str("00080016", "UI", in.SOPClass)
	o.str("00080018", "UI", in.SOPUID)
	o.str("00083002", "UI", in.TransferSyntax)
	o.str("00081190", "UR", seriesURL+"/instances/"+in.SOPUID)
	o.nullInt("00200013", "IS", in.InstanceNumber.Int64, in.InstanceNumber.Valid)
	o.nullInt("00280010", "US", in.Rows.Int64, in.Rows.Valid)
	o.nullInt("00280011", "US", in.Cols.Int64, in.Cols.Valid)
	o.nullInt("00280100", "US", in.BitsAllocated.Int64, in.BitsAllocated.Valid)
	if in.Frames.Valid && in.Frames.Int64 > 0 {
		o.nullInt("00280008", "IS", in.Frames.Int64, true)
	}
	return o
}

func splitMulti(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, `\`)
}

// Attributes "includefield=all" returns at study and series level: the Patient, General Study,
// Patient Study and General Series modules (PS3.3 C.7), taken from the first instance.
var studyAllGroups = map[uint16]bool{0x0010: true, 0x0032: true}

var levelTags = map[store.Level]map[string]bool{
	store.StudyLevel: tagSet("00080020", "00080030", "00080050", "00080051", "00080090", "00080096", "00081030",
		"00081032", "00081048", "00081049", "00081060", "00081062", "00081080", "0020000D", "00200010", "00101010",
		"00101020", "00101030", "00102180", "001021B0"),
	store.SeriesLevel: tagSet("00080021", "00080031", "00080060", "00080068", "0008103E", "00081050", "00081052",
		"00081070", "00081072", "00081111", "00081250", "00180015", "00185100", "0020000E", "00200011", "00200060",
		"00280108", "00280109", "00400244", "00400245", "00400253", "00400254", "00400260", "00400275"),
}

func tagSet(tags ...string) map[string]bool {
	m := map[string]bool{}
	for _, t := range tags {
		m[t] = true
	}
	return m
}

func (s *Service) addIncluded(ctx context.Context, o *object, level store.Level, row *store.Row, include map[string]bool,
	all bool, samples map[int64]map[string]json.RawMessage, base string) error {
	var pk int64
	var err error
	switch level {
	case store.StudyLevel:
		pk, err = s.st.FirstInstance(ctx, row.Study.PK, 0)
	case store.SeriesLevel:
		pk, err = s.st.FirstInstance(ctx, 0, row.Series.PK)
	default:
		pk = row.Instance.PK
	}
	if err != nil {
		return err
	}
	sample, ok := samples[pk]
	if !ok {
		raw, err := s.st.InstanceMetadata(ctx, pk)
		if err != nil {
			return err
		}
		raw = bytes.ReplaceAll(raw, []byte(dcm.BulkDataPrefix), []byte(dcm.BulkDataPrefix+base))
		if err := json.Unmarshal(raw, &sample); err != nil {
			return fmt.Errorf("decoding stored metadata: %w", err)
		}
		samples[pk] = sample
	}
	for t, v := range sample {
		if o.has(t) {
			continue
		}
		want := include[t]
		if all {
			switch level {
			case store.InstanceLevel:
				want = true
			case store.SeriesLevel:
				want = want || levelTags[store.SeriesLevel][t] || levelTags[store.StudyLevel][t] || groupIn(t, studyAllGroups)
			case store.StudyLevel:
				want = want || levelTags[store.StudyLevel][t] || groupIn(t, studyAllGroups)
			}
		}
		if want {
			o.raw(t, v)
		}
	}
	return nil
}

func groupIn(t string, groups map[uint16]bool) bool {
	g, err := strconv.ParseUint(t[:4], 16, 16)
	return err == nil && groups[uint16(g)]
}

package dicomweb

import (
	"mime"
	"sort"
	"strconv"
	"strings"
)

// mediaRange is one entry of an Accept header (RFC 9110 12.5.1) as DICOMweb uses it:
// multipart/related carries the part type in "type" and the transfer syntax in "transfer-syntax".
type mediaRange struct {
	mediaType string
	params    map[string]string
	q         float64
}

// parseAccept splits an Accept header into media ranges sorted by preference. DICOMweb clients
// send values such as `multipart/related; type="application/octet-stream"; transfer-syntax=*`.
func parseAccept(h string) []mediaRange {
	var out []mediaRange
	for _, part := range splitOutsideQuotes(h, ',') {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			// Be lenient with unquoted parameter values containing '/' (type=application/dicom).
			mt, params = lenientMediaType(part)
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		out = append(out, mediaRange{mediaType: strings.ToLower(mt), params: params, q: q})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].q > out[j].q })
	return out
}

func lenientMediaType(s string) (string, map[string]string) {
	fields := splitOutsideQuotes(s, ';')
	params := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return strings.ToLower(strings.TrimSpace(fields[0])), params
}

func splitOutsideQuotes(s string, sep rune) []string {
	var out []string
	inQuote := false
	start := 0
	for i, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == sep && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// partType is the media type of the parts a client accepts: for multipart/related its "type"
// parameter, otherwise the media type itself ("" for */*).
func (m mediaRange) partType() (string, bool) {
	switch m.mediaType {
	case "multipart/related":
		return strings.ToLower(m.params["type"]), true
	case "*/*", "multipart/*":
		return "", m.mediaType == "multipart/*"
	}
	return m.mediaType, false
}

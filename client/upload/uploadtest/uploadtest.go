// Package uploadtest is for tests of the station's upload: a real server (store, auth, the tus
// endpoint, DICOMweb under /dicom-web and GET /api/session) over loopback, and a small Part 10
// writer. Only tests import
// it; sanping/server/internal/dicomtest is out of the client's reach.
package uploadtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/dicomweb"
	"github.com/sanping/sanping/server/lossless"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/store"
	"github.com/sanping/sanping/server/upload"
)

// Server is a Sanping server with a clinic's station token.
type Server struct {
	URL   string
	Token string
	Store *store.Store
	// Auth holds the token (TokenID) and the station reports it sent.
	Auth    *auth.Service
	TokenID int64
}

// Start serves the upload routes, DICOMweb and GET /api/session on loopback, each through
// auth.Guard as the server mounts them. wrap, if not nil, wraps the
// whole handler (to count or cut requests).
func Start(tb testing.TB, wrap func(http.Handler) http.Handler) *Server {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	st, err := store.Open(ctx, store.Config{Dir: filepath.Join(dir, "data"), SameInstance: lossless.SameInstance})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	as, err := auth.New(ctx, st.DB(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	// The consultation tables: who may see a study (auth.StudyScope, in QIDO) reads them.
	if _, err := consult.New(ctx, st.DB(), nil, dir, nil); err != nil {
		tb.Fatal(err)
	}
	orgs, err := org.New(ctx, st.DB())
	if err != nil {
		tb.Fatal(err)
	}
	hosp, err := orgs.Add(ctx, org.Institution{Code: "H1", Name: "县医院", Kind: org.Hospital})
	if err != nil {
		tb.Fatal(err)
	}
	clinic, err := orgs.Add(ctx, org.Institution{Code: "C1", Name: "村卫生室", Kind: org.Clinic, ParentID: hosp.ID})
	if err != nil {
		tb.Fatal(err)
	}
	tok, token, err := as.CreateToken(ctx, "station", clinic.ID, auth.RoleClinic, "admin")
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := upload.New(upload.Config{Store: st, Dir: filepath.Join(dir, "uploads"), BasePath: "/api/uploads/", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	as.Mount(mux, svc.Routes())
	dw := dicomweb.New(dicomweb.Config{Store: st, Base: "/dicom-web", Logger: slog.New(slog.DiscardHandler)})
	as.Mount(mux, dw.Routes())
	as.Mount(mux, []auth.Route{{Pattern: "GET /api/session", Action: auth.ActSelf, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"username": p.Username, "institutionId": p.InstitutionID})
	})}, {Pattern: "POST /api/station/status", Action: auth.ActStationReport, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As server/api reads it: strictly.
		var st protocol.StationStatus
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 256<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			auth.WriteProblem(w, http.StatusBadRequest, err.Error())
			return
		}
		p, _ := auth.FromContext(r.Context())
		if err := as.ReportStation(r.Context(), p.TokenID, st); err != nil {
			auth.WriteProblem(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}})
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return &Server{URL: srv.URL, Token: token, Store: st, Auth: as, TokenID: tok.ID}
}

// Attribute tags by keyword (PS3.6).
const (
	fileMetaInformationGroupLength = 0x00020000
	fileMetaInformationVersion     = 0x00020001
	mediaStorageSOPClassUID        = 0x00020002
	mediaStorageSOPInstanceUID     = 0x00020003
	transferSyntaxUID              = 0x00020010
	sopClassUID                    = 0x00080016
	sopInstanceUID                 = 0x00080018
	modality                       = 0x00080060
	patientName                    = 0x00100010
	studyInstanceUID               = 0x0020000D
	seriesInstanceUID              = 0x0020000E
	pixelData                      = 0x7FE00010

	secondaryCapture = "1.2.840.10008.5.1.4.1.1.7"
	explicitVRLE     = "1.2.840.10008.1.2.1"
)

// Part10 is a Part 10 file (explicit VR little endian) of one secondary capture instance
// whose Pixel Data is n bytes, pseudo-random: no coding makes it smaller, so the station
// sends it as it is and tests can count its bytes.
func Part10(study, series, sop string, n int) []byte {
	meta := elem(nil, fileMetaInformationVersion, "OB", []byte{0, 1})
	meta = elem(meta, mediaStorageSOPClassUID, "UI", uid(secondaryCapture))
	meta = elem(meta, mediaStorageSOPInstanceUID, "UI", uid(sop))
	meta = elem(meta, transferSyntaxUID, "UI", uid(explicitVRLE))
	b := append(make([]byte, 128), "DICM"...)
	b = elem(b, fileMetaInformationGroupLength, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))
	b = append(b, meta...)
	b = elem(b, sopClassUID, "UI", uid(secondaryCapture))
	b = elem(b, sopInstanceUID, "UI", uid(sop))
	b = elem(b, modality, "CS", text("OT"))
	b = elem(b, patientName, "PN", text("Test^Patient"))
	b = elem(b, studyInstanceUID, "UI", uid(study))
	b = elem(b, seriesInstanceUID, "UI", uid(series))
	px := make([]byte, n+n%2)
	x := uint64(len(sop))*0x9E3779B97F4A7C15 | 1
	for i := range px {
		x ^= x << 13 // xorshift64
		x ^= x >> 7
		x ^= x << 17
		px[i] = byte(x >> 32)
	}
	return elem(b, pixelData, "OB", px)
}

// UID makes test UIDs: UID(1, 2) is "2.25.1.2".
func UID(parts ...int) string {
	s := "2.25"
	for _, p := range parts {
		s += fmt.Sprintf(".%d", p)
	}
	return s
}

func uid(s string) []byte {
	if len(s)%2 == 1 {
		s += "\x00"
	}
	return []byte(s)
}

func text(s string) []byte {
	if len(s)%2 == 1 {
		s += " "
	}
	return []byte(s)
}

func elem(b []byte, tag uint32, vr string, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT":
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	default:
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}

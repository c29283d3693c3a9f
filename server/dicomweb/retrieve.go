package dicomweb

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/render"
	"github.com/sanping/sanping/server/store"
)

// How one instance of a retrieve is sent.
type partEncoding int

const (
	asStored  partEncoding = iota // the stored bytes
	rewritten                     // implicit VR, big endian or deflated, rewritten as explicit VR LE
	decoded                       // compressed pixel data decoded, the data set explicit VR LE
)

// partPlan is what was decided for one instance before anything is sent.
type partPlan struct {
	in       *store.Instance
	encoding partEncoding
	layout   *store.StoredLayout // decoded only
	native   *nativeFrames       // decoded only
}

// retrieve answers Retrieve Study/Series/Instance (PS3.18 10.4) as multipart/related;
// type="application/dicom". Each instance is sent in the first acceptable transfer syntax it
// can be given in (PS3.18 8.7.8.2, per part): with transfer-syntax=* or the stored syntax as
// stored; without one, explicit VR little endian (PS3.18 8.7.3), rewritten or decoded, except
// that lossy compressed instances are sent as stored (8.7.3 lets a server that has only the
// lossy form send it). An instance that cannot be given in any acceptable syntax is left out
// with a Warning and 206 Partial Content; when none can, the answer is 406.
func (s *Service) retrieve(w http.ResponseWriter, r *http.Request) {
	study, series, instance, ok := uids(w, r)
	if !ok {
		return
	}
	wants, ok := acceptableDICOM(r.Header.Get("Accept"))
	if !ok {
		problem(w, http.StatusNotAcceptable, `instances are served as multipart/related; type="application/dicom"`)
		return
	}
	list, err := s.st.Instances(r.Context(), study, series, instance)
	if err != nil {
		s.storeError(w, r, err, "study, series or instance")
		return
	}
	plans := make([]partPlan, 0, len(list))
	var left []string
	for i := range list {
		p, err := s.planPart(r, &list[i], wants)
		if err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", list[i].SOPUID, err))
			continue
		}
		plans = append(plans, p)
	}
	// Native instances code well; a study with any compressed one is sent uncoded.
	if !slices.ContainsFunc(plans, func(p partPlan) bool { return p.encoding == asStored && !uncompressedSyntax(p.in.TransferSyntax) }) {
		nativePixels(w)
	}
	mw := multipart.NewWriter(w)
	sent := 0
	for _, p := range plans {
		err := s.writeFilePart(mw, p, func() {
			if sent == 0 {
				// Headers go with the first part, so that a first instance that fails to
				// decode can still be left out, or be a 406 when it is the only one.
				w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
				if len(left) > 0 {
					w.Header().Set("Warning", leftOutWarning(left))
					w.WriteHeader(http.StatusPartialContent)
				}
			}
			sent++
		})
		if err == nil {
			continue
		}
		if errors.Is(err, errPartNotStarted) {
			s.log.Warn("retrieve: instance left out", "sop_instance_uid", p.in.SOPUID, "transfer_syntax", p.in.TransferSyntax, "err", err)
			left = append(left, fmt.Sprintf("%s (%v)", p.in.SOPUID, err))
			continue
		}
		if !errors.Is(err, r.Context().Err()) {
			s.log.Error("retrieve: sending instance failed", "sop_instance_uid", p.in.SOPUID, "err", err)
		}
		return // headers are sent; the broken multipart body tells the client
	}
	if sent == 0 {
		problem(w, http.StatusNotAcceptable, "no instance can be given in an acceptable transfer syntax: "+
			strings.Join(left, "; ")+`; ask with transfer-syntax=* for them as stored`)
		return
	}
	mw.Close()
	s.record(r, "study.download", studyObject(study), "success")
}

// leftOutWarning is the Warning (RFC 9111 5.5, as PS3.18 8.4 uses it) naming the instances a
// retrieve left out.
func leftOutWarning(left []string) string {
	const most = 5
	msg := fmt.Sprintf("%d instance(s) left out, not available in an acceptable transfer syntax (ask with transfer-syntax=* for them as stored): %s",
		len(left), strings.Join(left[:min(len(left), most)], ", "))
	if len(left) > most {
		msg += ", ..."
	}
	return `299 sanping ` + strconv.Quote(msg)
}

// acceptableDICOM lists the transfer syntaxes an Accept header accepts application/dicom in,
// most preferred first: "*" for any, "" for the default (explicit VR little endian). No
// Accept, or */*, is the default.
func acceptableDICOM(accept string) ([]string, bool) {
	if strings.TrimSpace(accept) == "" {
		return []string{""}, true
	}
	var out []string
	for _, m := range parseAccept(accept) {
		if m.q <= 0 {
			continue
		}
		pt, _ := m.partType()
		if pt == "application/dicom" || (pt == "" && (m.mediaType == "*/*" || m.mediaType == "multipart/related" || m.mediaType == "multipart/*")) {
			out = append(out, m.params["transfer-syntax"])
		}
	}
	return out, len(out) > 0
}

// planPart chooses how an instance is sent: the first of wants it can be given in.
func (s *Service) planPart(r *http.Request, in *store.Instance, wants []string) (partPlan, error) {
	stored := in.TransferSyntax
	var why error
	for _, want := range wants {
		switch {
		case want == "*" || want == stored:
			return partPlan{in: in, encoding: asStored}, nil
		case want != "" && want != dcm.ExplicitVRLittleEndian:
			why = fmt.Errorf("stored as %s, not transcoded to %s", stored, want)
		case stored == dcm.ExplicitVRLittleEndian:
			return partPlan{in: in, encoding: asStored}, nil
		case dcm.CanTranscodeToExplicitLE(stored):
			return partPlan{in: in, encoding: rewritten}, nil
		case losslessDecodable(stored) || (want != "" && lossyDecodable(stored, in)):
			p, err := s.planDecode(r, in)
			if err == nil {
				return p, nil
			}
			why = fmt.Errorf("stored as %s, which cannot be decoded: %v", stored, err)
		case want == "" && !losslessStored(stored):
			return partPlan{in: in, encoding: asStored}, nil
		default:
			why = fmt.Errorf("stored as %s, which the server does not decode", stored)
		}
	}
	return partPlan{}, why
}

// lossyDecodable: lossy syntaxes render.DecodeFrame decodes: JPEG baseline (8 bits),
// extended (8 bits, or 12 bits held in 16-bit words) and JPEG-LS near-lossless (8 or 16).
func lossyDecodable(ts string, in *store.Instance) bool {
	switch ts {
	case "1.2.840.10008.1.2.4.81":
		return in.BitsAllocated.Int64 == 8 || in.BitsAllocated.Int64 == 16
	case "1.2.840.10008.1.2.4.50":
		return in.BitsAllocated.Int64 == 8
	case "1.2.840.10008.1.2.4.51":
		return in.BitsAllocated.Int64 == 8 || in.BitsAllocated.Int64 == 16
	}
	return false
}

// losslessStored reports whether a stored transfer syntax keeps the pixels exactly (PS3.5 A,
// PS3.6 Table A-1). Other encapsulated syntaxes are, or may be, lossy.
func losslessStored(ts string) bool {
	if !dcm.Encapsulated(ts) {
		return true
	}
	switch ts {
	case dcm.RLELossless,
		"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", // JPEG lossless
		"1.2.840.10008.1.2.4.80",                           // JPEG-LS lossless
		"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.92", // JPEG 2000 lossless only
		"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", // HTJ2K lossless
		"1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", // JPEG XL lossless, JPEG recompression
		"1.2.840.10008.1.2.1.98": // encapsulated uncompressed
		return true
	}
	return false
}

// planDecode checks, before anything is sent, what can be checked without decoding.
func (s *Service) planDecode(r *http.Request, in *store.Instance) (partPlan, error) {
	layout, err := s.st.Layout(r.Context(), in.PK)
	if err != nil {
		return partPlan{}, err
	}
	if len(layout.Frames) == 0 {
		if layout.FrameError != "" {
			return partPlan{}, errors.New("frames cannot be located: " + layout.FrameError)
		}
		if _, ok := layout.Bulk["7FE00010"]; !ok {
			// No pixel data: the data set is explicit VR little endian already (PS3.5 A.4).
			return partPlan{in: in, encoding: asStored}, nil
		}
		return partPlan{}, errors.New("no frames in the pixel data")
	}
	nf, err := s.nativeFrames(r, in, layout)
	if err != nil {
		return partPlan{}, err
	}
	if nf.frameSz > (1<<32-2)/int64(len(layout.Frames)) {
		return partPlan{}, dcm.ErrTooLargeForNative
	}
	return partPlan{in: in, encoding: decoded, layout: layout, native: nf}, nil
}

// errPartNotStarted: the instance failed before its part was begun and can be left out.
var errPartNotStarted = errors.New("instance not sent")

// writeFilePart sends one instance as planned; start is called just before its part begins.
func (s *Service) writeFilePart(mw *multipart.Writer, p partPlan, start func()) error {
	in := p.in
	f, err := os.Open(s.st.FilePath(in))
	if err != nil {
		return fmt.Errorf("opening stored instance: %w", err)
	}
	defer f.Close()
	h := textproto.MIMEHeader{}
	switch p.encoding {
	case rewritten:
		h.Set("Content-Type", "application/dicom; transfer-syntax="+dcm.ExplicitVRLittleEndian)
		start()
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		return dcm.TranscodeToExplicitLE(pw, f, in.Size)
	case decoded:
		px, err := p.decodedPixels(f)
		if err != nil {
			return fmt.Errorf("%w: %v", errPartNotStarted, err)
		}
		h.Set("Content-Type", "application/dicom; transfer-syntax="+dcm.ExplicitVRLittleEndian)
		start()
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		return dcm.TranscodeDecoded(pw, f, in.Size, px)
	}
	h.Set("Content-Type", "application/dicom; transfer-syntax="+in.TransferSyntax)
	h.Set("Content-Length", strconv.FormatInt(in.Size, 10))
	start()
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(pw, f)
	return err
}

// decodedPixels decodes the first frame (what the decoder makes of the pixels decides the
// attributes to rewrite) and hands the transcoder the rest frame by frame.
func (p partPlan) decodedPixels(f io.ReaderAt) (*dcm.NativePixels, error) {
	dl := p.layout.Dcm()
	first, got, err := p.native.decode(f, dl, p.layout.Frames[0])
	if err != nil {
		return nil, err
	}
	return &dcm.NativePixels{
		Frames:        len(p.layout.Frames),
		FrameLength:   p.native.frameSz,
		BitsAllocated: got.BitsAllocated,
		Frame: func(i int) ([]byte, error) {
			if i == 0 && first != nil {
				b := first
				first = nil
				return b, nil
			}
			b, _, err := p.native.decode(f, dl, p.layout.Frames[i])
			return b, err
		},
		Attributes: decodedAttributes(p.native.attrs, got, !losslessStored(p.in.TransferSyntax)),
	}, nil
}

// decodedAttributes are the Image Pixel attributes (PS3.3 C.7.6.3) that describe the decoded
// pixels where they differ from the stored ones: a JPEG decoder outputs RGB from YBR_FULL_422
// (as DCMTK's dcmdjpeg does), decoders interleave color samples. Pixels that were lossy
// compressed carry Lossy Image Compression "01" (PS3.3 C.7.6.1.1.5: once set, never reset).
func decodedAttributes(stored, got *render.Attributes, lossy bool) []dcm.Attribute {
	var out []dcm.Attribute
	us := func(t tag.Tag, was, is int) {
		if was != is {
			out = append(out, dcm.USAttribute(t, uint16(is)))
		}
	}
	us(tag.SamplesPerPixel, stored.SamplesPerPixel, got.SamplesPerPixel)
	if got.Photometric != stored.Photometric && got.Photometric != "" {
		out = append(out, dcm.CSAttribute(tag.PhotometricInterpretation, got.Photometric))
	}
	if got.SamplesPerPixel > 1 {
		out = append(out, dcm.USAttribute(tag.PlanarConfiguration, uint16(got.PlanarConfiguration)))
	}
	us(tag.BitsAllocated, stored.BitsAllocated, got.BitsAllocated)
	us(tag.BitsStored, stored.BitsStored, got.BitsStored)
	us(tag.HighBit, stored.HighBit, got.HighBit)
	us(tag.PixelRepresentation, stored.PixelRepresentation, got.PixelRepresentation)
	if lossy {
		out = append(out, dcm.CSAttribute(tag.LossyImageCompression, "01"))
	}
	return out
}

package render

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tags the pipeline reads (PS3.18 F.2 keys).
const (
	tagSamplesPerPixel      = "00280002"
	tagPhotometric          = "00280004"
	tagPlanarConfiguration  = "00280006"
	tagNumberOfFrames       = "00280008"
	tagRows                 = "00280010"
	tagColumns              = "00280011"
	tagBitsAllocated        = "00280100"
	tagBitsStored           = "00280101"
	tagHighBit              = "00280102"
	tagPixelRepresentation  = "00280103"
	tagWindowCenter         = "00281050"
	tagWindowWidth          = "00281051"
	tagRescaleIntercept     = "00281052"
	tagRescaleSlope         = "00281053"
	tagVOILUTFunction       = "00281056"
	tagRedDescriptor        = "00281101"
	tagGreenDescriptor      = "00281102"
	tagBlueDescriptor       = "00281103"
	tagRedData              = "00281201"
	tagGreenData            = "00281202"
	tagBlueData             = "00281203"
	tagModalityLUTSequence  = "00283000"
	tagLUTDescriptor        = "00283002"
	tagLUTData              = "00283006"
	tagVOILUTSequence       = "00283010"
	tagFrameVOILUTSequence  = "00289132"
	tagPixelValueTransform  = "00289145"
	tagPresentationLUTShape = "20500020"
	tagSharedFunctionalGrps = "52009229"
	tagPerFrameFunctionalGr = "52009230"
)

// jsonElem is one attribute of the DICOM JSON model.
type jsonElem struct {
	VR           string            `json:"vr"`
	Value        []json.RawMessage `json:"Value"`
	InlineBinary string            `json:"InlineBinary"`
	BulkDataURI  string            `json:"BulkDataURI"`
}

type jsonObject map[string]*jsonElem

func decodeObject(b []byte) (jsonObject, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' { // a metadata response: an array of one object
		var arr []json.RawMessage
		if err := json.Unmarshal(b, &arr); err != nil {
			return nil, err
		}
		if len(arr) == 0 {
			return jsonObject{}, nil
		}
		b = arr[0]
	}
	var o jsonObject
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	for k, v := range o {
		if u := strings.ToUpper(k); u != k {
			delete(o, k)
			o[u] = v
		}
	}
	return o, nil
}

// number reads a JSON number, or a string holding one (DS and IS are sometimes sent so).
func number(r json.RawMessage) (float64, bool) {
	r = bytes.TrimSpace(r)
	if len(r) == 0 || string(r) == "null" {
		return 0, false
	}
	s := string(r)
	if r[0] == '"' {
		if err := json.Unmarshal(r, &s); err != nil {
			return 0, false
		}
		s = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// numbers reads every value of tag; a value that is not a number is NaN.
func (o jsonObject) numbers(tag string) []float64 {
	e := o[tag]
	if e == nil {
		return nil
	}
	out := make([]float64, len(e.Value))
	for i, r := range e.Value {
		f, ok := number(r)
		if !ok {
			f = math.NaN()
		}
		out[i] = f
	}
	return out
}

func (o jsonObject) number(tag string) (float64, bool) {
	if e := o[tag]; e != nil && len(e.Value) > 0 {
		return number(e.Value[0])
	}
	return 0, false
}

func (o jsonObject) integer(tag string, def int) int {
	if f, ok := o.number(tag); ok {
		return int(f)
	}
	return def
}

// strs reads the string values of tag.
func (o jsonObject) strs(tag string) []string {
	e := o[tag]
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.Value))
	for _, r := range e.Value {
		var s string
		if json.Unmarshal(r, &s) != nil {
			s = ""
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func (o jsonObject) str(tag string) string {
	if v := o.strs(tag); len(v) > 0 {
		return v[0]
	}
	return ""
}

// item returns the first item of sequence tag (nil if none).
func (o jsonObject) item(tag string) (jsonObject, error) {
	items, err := o.items(tag, 1)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return items[0], nil
}

// items returns up to limit items of sequence tag (all when limit < 0).
func (o jsonObject) items(tag string, limit int) ([]jsonObject, error) {
	e := o[tag]
	if e == nil {
		return nil, nil
	}
	vals := e.Value
	if limit >= 0 && len(vals) > limit {
		vals = vals[:limit]
	}
	out := make([]jsonObject, 0, len(vals))
	for _, r := range vals {
		it, err := decodeObject(r)
		if err != nil {
			return nil, fmt.Errorf("sequence %s: %w", tag, err)
		}
		out = append(out, it)
	}
	return out, nil
}

// windows reads Window Center, Width and VOI LUT Function values of o (nil if none).
func (o jsonObject) windows() []Window {
	cs, ws := o.numbers(tagWindowCenter), o.numbers(tagWindowWidth)
	fs := o.strs(tagVOILUTFunction)
	var out []Window
	for i := 0; i < len(cs) && i < len(ws); i++ {
		if math.IsNaN(cs[i]) || math.IsNaN(ws[i]) {
			continue
		}
		w := Window{Center: cs[i], Width: ws[i], Function: "LINEAR"}
		switch {
		case i < len(fs) && fs[i] != "":
			w.Function = strings.ToUpper(fs[i])
		case len(fs) > 0 && fs[0] != "":
			w.Function = strings.ToUpper(fs[0])
		}
		out = append(out, w)
	}
	return out
}

// rescale reads Rescale Slope and Intercept of o.
func (o jsonObject) rescale() (slope, intercept float64, ok bool) {
	s, okS := o.number(tagRescaleSlope)
	i, okI := o.number(tagRescaleIntercept)
	if !okS && !okI {
		return 1, 0, false
	}
	if !okS || s == 0 {
		s = 1
	}
	return s, i, true
}

// lutRef is a LUT read from JSON, with what is needed to settle the sign of its first mapped value.
type lutRef struct {
	lut      *LUT
	signedVR bool // descriptor VR SS: the first mapped value is already signed
	rawFirst int
}

// readLUT reads a LUT from its descriptor and data attributes in o. It returns nil when the
// descriptor or the data is absent (or the data is only a BulkDataURI and fetch is nil).
func readLUT(o jsonObject, descTag, dataTag string, fetch func(string) ([]byte, error)) (*lutRef, error) {
	if o == nil || o[descTag] == nil || o[dataTag] == nil {
		return nil, nil
	}
	d := o.numbers(descTag)
	if len(d) < 3 || math.IsNaN(d[0]) || math.IsNaN(d[1]) {
		return nil, nil
	}
	entries := int(uint16(int64(d[0])))
	if entries == 0 {
		entries = 65536
	}
	bits := 0
	if !math.IsNaN(d[2]) {
		bits = int(d[2])
	}
	de := o[descTag]
	ref := &lutRef{signedVR: de.VR == "SS", rawFirst: int(d[1])}
	e := o[dataTag]
	var words []uint16
	switch {
	case len(e.Value) > 0: // US or SS values
		words = make([]uint16, 0, len(e.Value))
		for _, r := range e.Value {
			f, _ := number(r)
			words = append(words, uint16(int64(f)))
		}
	case e.InlineBinary != "" || e.BulkDataURI != "":
		var b []byte
		if e.InlineBinary != "" {
			s := strings.TrimSpace(e.InlineBinary)
			var err error
			if b, err = base64.StdEncoding.DecodeString(s); err != nil {
				if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
					return nil, fmt.Errorf("LUT data %s: %w", dataTag, err)
				}
			}
		} else {
			if fetch == nil {
				return nil, nil
			}
			var err error
			if b, err = fetch(e.BulkDataURI); err != nil {
				return nil, fmt.Errorf("LUT data %s: %w", dataTag, err)
			}
		}
		if entries > 1 && len(b)/2 == (entries+1)/2 && len(b) < 2*entries {
			// 8-bit entries packed two to a word (DCMTK accepts these too).
			words = make([]uint16, entries)
			for i := range words {
				words[i] = uint16(b[i])
			}
		} else {
			words = make([]uint16, len(b)/2)
			for i := range words {
				words[i] = binary.LittleEndian.Uint16(b[2*i:])
			}
		}
	default:
		return nil, nil
	}
	if len(words) == 0 {
		return nil, nil
	}
	if len(words) > entries {
		words = words[:entries]
	}
	ref.lut = &LUT{FirstMapped: ref.rawFirst, Bits: bits, Data: words}
	return ref, nil
}

// settle fixes the first mapped value of a LUT whose descriptor came as US when the values it
// maps may be negative (the descriptor's VR is US or SS: PS3.3 C.11.1.1.1, C.7.6.3.1.5).
func (r *lutRef) settle(signedInput bool) *LUT {
	if r == nil {
		return nil
	}
	if !r.signedVR && signedInput && r.rawFirst > 32767 && r.rawFirst < 65536 {
		r.lut.FirstMapped = r.rawFirst - 65536
	}
	return r.lut
}

// AttributesFromJSON reads Attributes from an instance's DICOM JSON (an object, or an array
// whose first object is used). LUT data given as InlineBinary is decoded; data given only as
// BulkDataURI is fetched through fetch (may be nil: then the LUT is absent). Values from the
// Shared Functional Groups Sequence fill what the top level lacks; per-frame values go to PerFrame.
func AttributesFromJSON(js []byte, fetch func(uri string) ([]byte, error)) (*Attributes, error) {
	o, err := decodeObject(js)
	if err != nil {
		return nil, fmt.Errorf("DICOM JSON: %w", err)
	}
	a := &Attributes{
		Rows:                o.integer(tagRows, 0),
		Columns:             o.integer(tagColumns, 0),
		SamplesPerPixel:     o.integer(tagSamplesPerPixel, 1),
		BitsAllocated:       o.integer(tagBitsAllocated, 0),
		BitsStored:          o.integer(tagBitsStored, 0),
		HighBit:             o.integer(tagHighBit, -1),
		PixelRepresentation: o.integer(tagPixelRepresentation, 0),
		Photometric:         strings.ToUpper(o.str(tagPhotometric)),
		PlanarConfiguration: o.integer(tagPlanarConfiguration, 0),
		NumberOfFrames:      o.integer(tagNumberOfFrames, 1),
		Windows:             o.windows(),

		PresentationLUTShape: strings.ToUpper(o.str(tagPresentationLUTShape)),
	}
	if a.BitsStored == 0 {
		a.BitsStored = a.BitsAllocated
	}
	if a.HighBit < 0 {
		a.HighBit = a.BitsStored - 1
	}
	var hasRescale bool
	a.RescaleSlope, a.RescaleIntercept, hasRescale = o.rescale()

	// Enhanced multi-frame objects carry these in functional groups (PS3.3 C.7.6.16).
	shared, err := o.item(tagSharedFunctionalGrps)
	if err != nil {
		return nil, err
	}
	if shared != nil {
		pvt, err := shared.item(tagPixelValueTransform)
		if err != nil {
			return nil, err
		}
		if s, i, ok := pvt.rescale(); ok && !hasRescale {
			a.RescaleSlope, a.RescaleIntercept = s, i
		}
		fvl, err := shared.item(tagFrameVOILUTSequence)
		if err != nil {
			return nil, err
		}
		if w := fvl.windows(); len(w) > 0 && len(a.Windows) == 0 {
			a.Windows = w
		}
	}
	perFrame, err := o.items(tagPerFrameFunctionalGr, -1)
	if err != nil {
		return nil, err
	}
	seen := false
	pf := make([]FrameValues, len(perFrame))
	for i, it := range perFrame {
		pvt, err := it.item(tagPixelValueTransform)
		if err != nil {
			return nil, err
		}
		if s, c, ok := pvt.rescale(); ok {
			pf[i] = FrameValues{HasRescale: true, RescaleSlope: s, RescaleIntercept: c}
			seen = true
		}
		fvl, err := it.item(tagFrameVOILUTSequence)
		if err != nil {
			return nil, err
		}
		if w := fvl.windows(); len(w) > 0 {
			pf[i].Windows = w
			seen = true
		}
	}
	if seen {
		a.PerFrame = pf
	}

	signedPixels := a.PixelRepresentation == 1
	mitem, err := o.item(tagModalityLUTSequence)
	if err != nil {
		return nil, err
	}
	mref, err := readLUT(mitem, tagLUTDescriptor, tagLUTData, fetch)
	if err != nil {
		return nil, err
	}
	a.ModalityLUT = mref.settle(signedPixels)

	vitem, err := o.item(tagVOILUTSequence)
	if err != nil {
		return nil, err
	}
	vref, err := readLUT(vitem, tagLUTDescriptor, tagLUTData, fetch)
	if err != nil {
		return nil, err
	}
	a.VOILUT = vref.settle(a.ModalityLUT == nil && (signedPixels || a.RescaleIntercept < 0 || a.RescaleSlope < 0))

	if a.Photometric == "PALETTE COLOR" {
		for _, p := range []struct {
			desc, data string
			dst        **LUT
		}{
			{tagRedDescriptor, tagRedData, &a.RedPalette},
			{tagGreenDescriptor, tagGreenData, &a.GreenPalette},
			{tagBlueDescriptor, tagBlueData, &a.BluePalette},
		} {
			ref, err := readLUT(o, p.desc, p.data, fetch)
			if err != nil {
				return nil, err
			}
			*p.dst = ref.settle(signedPixels)
		}
	}
	return a, nil
}

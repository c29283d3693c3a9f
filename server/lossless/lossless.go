// Package lossless tells an instance from its lossless transcoding: the station sends native
// images as JPEG-LS lossless under the same SOP Instance UID (PS3.5 8.2.3: a lossless
// transcoding is the same instance), so the same image may reach the store in two transfer
// syntaxes, which must not be a conflict. The store (server/store) knows no codec; it calls
// SameInstance through store.Config.
package lossless

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/render"
)

// losslessSyntaxes are those whose pixel values are the original's: native, RLE, JPEG
// lossless (process 14, SV1), JPEG-LS lossless and JPEG 2000 lossless (PS3.5 A.4). JPEG 2000
// is not decoded by the server, so such a pair is never found the same.
var losslessSyntaxes = map[string]bool{
	dcm.ImplicitVRLittleEndian: true, dcm.ExplicitVRLittleEndian: true,
	dcm.DeflatedExplicitVRLE: true, dcm.ExplicitVRBigEndian: true,
	dcm.RLELossless:          true,
	"1.2.840.10008.1.2.4.57": true, "1.2.840.10008.1.2.4.70": true,
	dcm.JPEGLSLossless:       true,
	"1.2.840.10008.1.2.4.90": true,
}

// maxCompared bounds the objects compared: both are read whole, frame by frame.
const maxCompared = 2 << 30

// SameInstance reports whether a and b, both lossless, hold the same data set apart from what
// their transfer syntaxes make differ — the File Meta Information (group 0002), the Pixel Data
// encoding and encapsulation, the offset tables, Planar Configuration for color (decoded
// pixels are compared interleaved) — and the same pixel values frame by frame: samples within
// Bits Stored, since a JPEG-LS codec codes no more (PS3.5 8.1.1). Every other attribute must
// be equal, Lossy Image Compression among them: a lossless transcoding does not change it.
// An error means they could not be compared (they are not then the same).
func SameInstance(ctx context.Context, a, b io.ReaderAt, na, nb int64) (bool, error) {
	if na > maxCompared || nb > maxCompared {
		return false, nil
	}
	x, err := open(a, na)
	if err != nil {
		return false, err
	}
	y, err := open(b, nb)
	if err != nil {
		return false, err
	}
	if !losslessSyntaxes[x.in.TransferSyntax] || !losslessSyntaxes[y.in.TransferSyntax] ||
		x.in.SOPInstanceUID != y.in.SOPInstanceUID || x.in.SOPClassUID != y.in.SOPClassUID {
		return false, nil
	}
	if same, err := sameDataSet(x, y); err != nil || !same {
		return false, err
	}
	return samePixels(ctx, x, y)
}

// object is one of the two, parsed.
type object struct {
	src   io.ReaderAt
	in    *dcm.Instance
	attrs map[string]json.RawMessage // top-level DICOM JSON
	a     *render.Attributes
}

func open(src io.ReaderAt, size int64) (*object, error) {
	in, err := dcm.Parse(src, size)
	if err != nil {
		return nil, err
	}
	js, err := in.JSON(src, "")
	if err != nil {
		return nil, err
	}
	o := &object{src: src, in: in}
	if err := json.Unmarshal(js, &o.attrs); err != nil {
		return nil, err
	}
	if o.a, err = render.AttributesFromJSON(js, nil); err != nil {
		return nil, err
	}
	return o, nil
}

// Top-level attributes a lossless transcoding may change (beside group 0002).
var transferAttributes = []string{
	"7FE00010", // Pixel Data
	"7FE00001", // Extended Offset Table
	"7FE00002", // Extended Offset Table Lengths
	"7FE00003", // Encapsulated Pixel Data Value Total Length
}

const planarConfiguration = "00280006"

// comparable is the data set's attributes as compared: the DICOM JSON without those a
// transfer syntax decides.
func (o *object) comparable() map[string]json.RawMessage {
	m := maps.Clone(o.attrs)
	for k := range m {
		if strings.HasPrefix(k, "0002") || slices.Contains(transferAttributes, k) {
			delete(m, k)
		}
	}
	if o.a.SamplesPerPixel > 1 {
		delete(m, planarConfiguration)
	}
	return m
}

// sameDataSet compares the attributes (values as DICOM JSON, strings decoded from their
// character sets) and every binary value that JSON names only by a bulk data URI.
func sameDataSet(x, y *object) (bool, error) {
	mx, my := x.comparable(), y.comparable()
	if len(mx) != len(my) {
		return false, nil
	}
	for k, v := range mx {
		w, ok := my[k]
		if !ok || !bytes.Equal(v, w) && !sameUnknown(x, y, k, v, w) {
			return false, nil
		}
	}
	bx, by := x.bulk(), y.bulk()
	if !slices.Equal(bx, by) {
		return false, nil
	}
	for _, path := range bx {
		vx, err := x.bulkValue(path)
		if err != nil {
			return false, err
		}
		vy, err := y.bulkValue(path)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(vx, vy) {
			return false, nil
		}
	}
	return true, nil
}

// sameUnknown: an attribute whose VR only one side knows — a private creator read in implicit
// VR is UN, which a transcoding to explicit VR writes as LO (PS3.5 7.8.1) — is the same when
// its value's bytes are, up to the padding.
func sameUnknown(x, y *object, key string, vx, vy json.RawMessage) bool {
	var jx, jy struct{ VR string }
	if json.Unmarshal(vx, &jx) != nil || json.Unmarshal(vy, &jy) != nil || (jx.VR == "UN") == (jy.VR == "UN") {
		return false
	}
	n, err := strconv.ParseUint(key, 16, 32)
	if err != nil {
		return false
	}
	t := tag.Tag{Group: uint16(n >> 16), Element: uint16(n)}
	tx, okx := rawText(x, t)
	ty, oky := rawText(y, t)
	return okx && oky && tx == ty
}

// rawText is a string or unknown value as its bytes, without trailing padding.
func rawText(o *object, t tag.Tag) (string, bool) {
	e, err := o.in.Dataset.FindElementByTag(t)
	if err != nil {
		return "", false
	}
	var s string
	switch v := e.Value.GetValue().(type) {
	case []byte:
		s = string(v)
	case []string:
		s = strings.Join(v, `\`)
	default:
		return "", false
	}
	return strings.TrimRight(s, " \x00"), true
}

// bulk lists the paths of binary values other than the pixel data's, sorted.
func (o *object) bulk() []string {
	var out []string
	for p := range o.in.Layout.Bulk {
		if !slices.Contains(transferAttributes, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// bulkValue is a binary value, little endian.
func (o *object) bulkValue(path string) ([]byte, error) {
	l := o.in.Layout
	b, err := dcm.ReadSpan(o.src, l, l.Bulk[path])
	if err != nil {
		return nil, err
	}
	if o.in.TransferSyntax == dcm.ExplicitVRBigEndian {
		if w := dcm.SwapWidth(l.BulkVR[path]); w > 1 {
			for i := 0; i+w <= len(b); i += w {
				slices.Reverse(b[i : i+w])
			}
		}
	}
	return b, nil
}

// samePixels decodes both frame by frame and compares the sample values.
func samePixels(ctx context.Context, x, y *object) (bool, error) {
	if x.in.Layout.Pixel == nil || y.in.Layout.Pixel == nil {
		return x.in.Layout.Pixel == nil && y.in.Layout.Pixel == nil, nil
	}
	fx, err := x.in.Frames(x.src)
	if err != nil {
		return false, err
	}
	fy, err := y.in.Frames(y.src)
	if err != nil {
		return false, err
	}
	if len(fx) != len(fy) || len(fx) == 0 {
		return false, nil
	}
	for i := range fx {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		sx, err := x.samples(fx[i])
		if err != nil {
			return false, fmt.Errorf("frame %d: %w", i+1, err)
		}
		sy, err := y.samples(fy[i])
		if err != nil {
			return false, fmt.Errorf("frame %d: %w", i+1, err)
		}
		if !slices.Equal(sx, sy) {
			return false, nil
		}
	}
	return true, nil
}

// samples decodes one frame to its sample values, interleaved by pixel, each within Bits Stored.
func (o *object) samples(fr dcm.Frame) ([]uint16, error) {
	raw := make([]byte, 0, fr.Size())
	for _, sp := range fr {
		b, err := dcm.ReadSpan(o.src, o.in.Layout, sp)
		if err != nil {
			return nil, err
		}
		raw = append(raw, b...)
	}
	px, a, err := render.DecodeFrame(raw, o.in.TransferSyntax, o.in.Layout.Pixel.VR, o.a)
	if err != nil {
		return nil, err
	}
	bs := o.a.BitsStored
	if a.BitsAllocated != 8 && a.BitsAllocated != 16 || bs < 1 || bs > a.BitsAllocated {
		return nil, fmt.Errorf("pixels of %d bits stored in %d are not compared", bs, a.BitsAllocated)
	}
	n := a.Rows * a.Columns * a.SamplesPerPixel
	width := a.BitsAllocated / 8
	if len(px) < n*width {
		return nil, fmt.Errorf("decoded frame of %d bytes, want %d", len(px), n*width)
	}
	mask := uint16(1<<bs - 1)
	out := make([]uint16, n)
	pixels := a.Rows * a.Columns
	for i := range n {
		k := i
		if a.PlanarConfiguration == 1 && a.SamplesPerPixel > 1 {
			k = (i%a.SamplesPerPixel)*pixels + i/a.SamplesPerPixel // from planes
		}
		if width == 1 {
			out[i] = uint16(px[k]) & mask
		} else {
			out[i] = binary.LittleEndian.Uint16(px[2*k:]) & mask
		}
	}
	return out, nil
}

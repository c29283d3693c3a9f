package dcm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// TestTranscodeWideWordsAcrossBuffer: a big endian file whose 4- and 8-byte values (OF, OD,
// UL, FD) are longer than the transcoder's write buffer, at every alignment, transcodes to
// explicit VR little endian with every value swapped.
func TestTranscodeWideWordsAcrossBuffer(t *testing.T) {
	const n = 40000 // 160 KB of OF, 320 KB of OD: both cross the 64 KB buffer
	of := make([]uint32, n)
	od := make([]float64, n/2)
	for i := range of {
		of[i] = math.Float32bits(float32(i) + 0.5)
	}
	for i := range od {
		od[i] = float64(i) * 1.25
	}
	for pad := 0; pad < 16; pad += 2 {
		elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassCT),
			dicomtest.RawE(0x00091010, "OB", bytes.Repeat([]byte{1}, 100+pad)), // shifts what follows by pad bytes
			dicomtest.Str(0x00090010, "LO", "SANPING"),
			dicomtest.E{Tag: 0x7FE00008, VR: "OF", U32: of},
			dicomtest.E{Tag: 0x7FE00009, VR: "OD", F64: od},
		)
		src := dicomtest.File{TS: dicomtest.TSExplicitBE, Elems: elems}.Bytes()
		var out bytes.Buffer
		err := dcm.TranscodeToExplicitLE(&out, bytes.NewReader(src), int64(len(src)))
		if err != nil {
			if errors.Is(err, io.ErrShortBuffer) {
				t.Fatalf("fixed bug is back: TranscodeToExplicitLE fails with %v for a big endian file with a long OF/OD value (pad %d): "+
					"transcode.go copySwapped does io.CopyN(bufio.Writer, swapReader), bufio.Writer.ReadFrom reads into its "+
					"remaining space, and swapReader.Read returns io.ErrShortBuffer when that space is smaller than one word "+
					"(any 4- or 8-byte VR whose value crosses the 64 KB buffer at an offset that is not a multiple of its width)", err, pad)
			}
			t.Fatalf("pad %d: %v", pad, err)
		}
		in, r := parse(t, out.Bytes())
		if in.TransferSyntax != dicomtest.TSExplicitLE {
			t.Fatalf("transcoded to %s", in.TransferSyntax)
		}
		for _, c := range []struct {
			path string
			want []byte
		}{
			{"7FE00008", func() []byte {
				var b []byte
				for _, v := range of {
					b = binary.LittleEndian.AppendUint32(b, v)
				}
				return b
			}()},
			{"7FE00009", func() []byte {
				var b []byte
				for _, v := range od {
					b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
				}
				return b
			}()},
		} {
			s, ok := in.Layout.Bulk[c.path]
			if !ok {
				t.Fatalf("pad %d: no %s in the transcoded file", pad, c.path)
			}
			got, err := dcm.ReadSpan(r, in.Layout, s)
			if err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("pad %d: %s not swapped to little endian (%v)", pad, c.path, err)
			}
		}
	}
}

// TestTranscodeDecoded: the encapsulated Pixel Data is replaced by what the decoder gives, the
// Extended Offset Table goes with the fragments, the attributes to set replace stored ones or
// are added in tag order, and an odd length is padded.
func TestTranscodeDecoded(t *testing.T) {
	u := dicomtest.UIDs{Study: "1.2.3", Series: "1.2.3.4", SOP: "1.2.3.4.5"}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(1, 3, 8, 1, "YBR_FULL_422")...)
	elems = append(elems, dicomtest.RawE(0x7FE00001, "OV", make([]byte, 16)), dicomtest.RawE(0x7FE00002, "OV", make([]byte, 16)),
		dicomtest.Encapsulated(nil, []byte{0xFF, 0xD8, 1, 2}, []byte{0xFF, 0xD8, 3, 4}))
	file := dicomtest.File{TS: "1.2.840.10008.1.2.4.50", Elems: elems}.Bytes()
	var out bytes.Buffer
	err := dcm.TranscodeDecoded(&out, bytes.NewReader(file), int64(len(file)), &dcm.NativePixels{
		Frames: 1, FrameLength: 3, BitsAllocated: 8,
		Frame: func(i int) ([]byte, error) { return []byte{byte(i), 7, 8}, nil },
		Attributes: []dcm.Attribute{
			dcm.CSAttribute(tag.LossyImageCompression, "01"),
			dcm.CSAttribute(tag.PhotometricInterpretation, "RGB"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dcm.Parse(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	if got.TransferSyntax != dcm.ExplicitVRLittleEndian || got.SOPInstanceUID != u.SOP {
		t.Errorf("transfer syntax %s, SOP Instance UID %s", got.TransferSyntax, got.SOPInstanceUID)
	}
	if pi, lossy := got.String(tag.PhotometricInterpretation), got.String(tag.LossyImageCompression); pi != "RGB" || lossy != "01" {
		t.Errorf("Photometric Interpretation %q, Lossy Image Compression %q", pi, lossy)
	}
	if got.Layout.ExtendedOffsets != nil || got.Layout.ExtendedLengths != nil {
		t.Error("Extended Offset Table kept")
	}
	px := got.Layout.Pixel
	if px == nil || px.Encapsulated || px.VR != "OB" || px.Value.Length != 4 {
		t.Fatalf("pixel data %+v", px)
	}
	if v := out.Bytes()[px.Value.Offset:][:4]; !bytes.Equal(v, []byte{0, 7, 8, 0}) {
		t.Errorf("pixel data % X", v)
	}
}

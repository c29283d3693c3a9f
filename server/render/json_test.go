package render

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func b64words(v ...uint16) string {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestAttributesFromJSONCT(t *testing.T) {
	js := `{
	  "00080060": {"vr": "CS", "Value": ["CT"]},
	  "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
	  "00280002": {"vr": "US", "Value": [1]},
	  "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
	  "00280008": {"vr": "IS", "Value": [3]},
	  "00280010": {"vr": "US", "Value": [512]},
	  "00280011": {"vr": "US", "Value": [256]},
	  "00280100": {"vr": "US", "Value": [16]},
	  "00280101": {"vr": "US", "Value": [12]},
	  "00280102": {"vr": "US", "Value": [11]},
	  "00280103": {"vr": "US", "Value": [1]},
	  "00281050": {"vr": "DS", "Value": [40, "-600.5 "]},
	  "00281051": {"vr": "DS", "Value": [400, 1500]},
	  "00281056": {"vr": "CS", "Value": ["LINEAR_EXACT"]},
	  "00281052": {"vr": "DS", "Value": ["-1024"]},
	  "00281053": {"vr": "DS", "Value": [1.5]},
	  "20500020": {"vr": "CS", "Value": ["inverse"]},
	  "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk/7FE00010"}
	}`
	a, err := AttributesFromJSON([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Attributes{Rows: 512, Columns: 256, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, HighBit: 11,
		PixelRepresentation: 1, Photometric: "MONOCHROME2", NumberOfFrames: 3, RescaleSlope: 1.5, RescaleIntercept: -1024,
		Windows:              []Window{{40, 400, "LINEAR_EXACT"}, {-600.5, 1500, "LINEAR_EXACT"}},
		PresentationLUTShape: "INVERSE"}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
}

func TestAttributesFromJSONDefaults(t *testing.T) {
	// A metadata response (an array), lowercase keys, few attributes.
	js := `[{"00280010": {"vr": "US", "Value": [2]}, "00280011": {"vr": "US", "Value": [3]},
	  "00280100": {"vr": "US", "Value": [8]}, "00280004": {"vr": "CS", "Value": ["monochrome1"]},
	  "00281050": {"vr": "DS", "Value": [null, 10]}, "00281051": {"vr": "DS", "Value": [5, 20]},
	  "00281052": {"vr": "DS"}, "00280103": {"vr": "US", "Value": []},
	  "0028100a": {"vr": "US", "Value": [1]}}]`
	a, err := AttributesFromJSON([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Attributes{Rows: 2, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, HighBit: 7,
		Photometric: "MONOCHROME1", NumberOfFrames: 1, RescaleSlope: 1, Windows: []Window{{10, 20, "LINEAR"}}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
	if _, err := AttributesFromJSON([]byte(`{"00280010": `), nil); err == nil {
		t.Error("truncated JSON accepted")
	}
	if _, err := AttributesFromJSON([]byte(`{"00283000": {"vr": "SQ", "Value": [5]}}`), nil); err == nil {
		t.Error("sequence item that is not an object accepted")
	}
	if a, err := AttributesFromJSON([]byte(`[]`), nil); err != nil || a.Rows != 0 {
		t.Errorf("empty array: %v %+v", err, a)
	}
}

func TestAttributesFromJSONLUTs(t *testing.T) {
	fetched := map[string]int{}
	fetch := func(uri string) ([]byte, error) {
		fetched[uri]++
		switch uri {
		case "bulk/voi":
			return []byte{0, 0, 0x00, 0x10, 0xFF, 0x0F}, nil // 0, 4096, 4095
		case "bulk/red":
			return []byte{1, 2, 3, 4}, nil // 8-bit entries packed two to a word
		}
		return nil, errors.New("no such bulk data")
	}
	js := fmt.Sprintf(`{
	  "00280004": {"vr": "CS", "Value": ["PALETTE COLOR"]},
	  "00280103": {"vr": "US", "Value": [1]},
	  "00283000": {"vr": "SQ", "Value": [{
	    "00283002": {"vr": "US", "Value": [3, 64512, 16]},
	    "00283006": {"vr": "OW", "InlineBinary": %q}
	  }]},
	  "00283010": {"vr": "SQ", "Value": [{
	    "00283002": {"vr": "SS", "Value": [3, -5, 12]},
	    "00283006": {"vr": "OW", "BulkDataURI": "bulk/voi"}
	  }, {
	    "00283002": {"vr": "US", "Value": [1, 0, 8]},
	    "00283006": {"vr": "OW", "BulkDataURI": "bulk/never"}
	  }]},
	  "00281101": {"vr": "US", "Value": [4, 0, 8]},
	  "00281201": {"vr": "OW", "BulkDataURI": "bulk/red"},
	  "00281102": {"vr": "SS", "Value": [0, -1, 16]},
	  "00281202": {"vr": "OW", "InlineBinary": %q},
	  "00281103": {"vr": "US", "Value": [2, 10, 16]},
	  "00281203": {"vr": "US", "Value": [65535, 7]}
	}`, b64words(100, 200, 300), strings.Repeat(b64words(0x1234), 1))
	a, err := AttributesFromJSON([]byte(js), fetch)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want *LUT
	}{
		// US descriptor 64512 on signed pixels is -1024.
		{"modality", a.ModalityLUT, &LUT{FirstMapped: -1024, Bits: 16, Data: []uint16{100, 200, 300}}},
		{"VOI", a.VOILUT, &LUT{FirstMapped: -5, Bits: 12, Data: []uint16{0, 4096, 4095}}},
		{"red", a.RedPalette, &LUT{FirstMapped: 0, Bits: 8, Data: []uint16{1, 2, 3, 4}}},
		// 0 entries means 65536 (here fewer are given); an SS first mapped value is already signed.
		{"green", a.GreenPalette, &LUT{FirstMapped: -1, Bits: 16, Data: []uint16{0x1234}}},
		{"blue", a.BluePalette, &LUT{FirstMapped: 10, Bits: 16, Data: []uint16{65535, 7}}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, c.got, c.want)
		}
	}
	if fetched["bulk/never"] != 0 || fetched["bulk/voi"] != 1 {
		t.Errorf("fetched %v", fetched)
	}
	// Without fetch, LUTs given by BulkDataURI are absent; inline ones are still read.
	a, err = AttributesFromJSON([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.VOILUT != nil || a.RedPalette != nil || a.ModalityLUT == nil || a.GreenPalette == nil {
		t.Errorf("without fetch: VOI %v red %v modality %v green %v", a.VOILUT, a.RedPalette, a.ModalityLUT, a.GreenPalette)
	}
	// A failing fetch is an error.
	bad := strings.Replace(js, "bulk/voi", "bulk/missing", 1)
	if _, err := AttributesFromJSON([]byte(bad), fetch); err == nil || !strings.Contains(err.Error(), "no such bulk data") {
		t.Errorf("failing fetch: %v", err)
	}
	// A VOI LUT on unsigned data keeps a large first mapped value.
	js2 := `{"00283010": {"vr": "SQ", "Value": [{"00283002": {"vr": "US", "Value": [2, 40000, 8]},
	  "00283006": {"vr": "US", "Value": [1, 2]}}]}}`
	if a, err := AttributesFromJSON([]byte(js2), nil); err != nil || a.VOILUT == nil || a.VOILUT.FirstMapped != 40000 {
		t.Errorf("unsigned VOI LUT: %v %+v", err, a.VOILUT)
	}
	// A palette is only read for PALETTE COLOR (enhanced objects carry supplemental ones).
	mono := strings.Replace(js, "PALETTE COLOR", "MONOCHROME2", 1)
	if a, err := AttributesFromJSON([]byte(mono), fetch); err != nil || a.RedPalette != nil {
		t.Errorf("palette on MONOCHROME2: %v %+v", err, a.RedPalette)
	}
}

func TestAttributesFromJSONFunctionalGroups(t *testing.T) {
	js := `{
	  "00280010": {"vr": "US", "Value": [1]}, "00280011": {"vr": "US", "Value": [2]},
	  "00280100": {"vr": "US", "Value": [16]}, "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
	  "52009229": {"vr": "SQ", "Value": [{
	    "00289145": {"vr": "SQ", "Value": [{"00281052": {"vr": "DS", "Value": [-1024]}, "00281053": {"vr": "DS", "Value": [1]}}]},
	    "00289132": {"vr": "SQ", "Value": [{"00281050": {"vr": "DS", "Value": [40]}, "00281051": {"vr": "DS", "Value": [400]}}]}
	  }]},
	  "52009230": {"vr": "SQ", "Value": [
	    {"00209111": {"vr": "SQ", "Value": [{}]}},
	    {"00289145": {"vr": "SQ", "Value": [{"00281052": {"vr": "DS", "Value": [-1000]}, "00281053": {"vr": "DS", "Value": [2]}}]},
	     "00289132": {"vr": "SQ", "Value": [{"00281050": {"vr": "DS", "Value": [50, 60]}, "00281051": {"vr": "DS", "Value": [500, 600]},
	       "00281056": {"vr": "CS", "Value": ["SIGMOID"]}}]}}
	  ]}
	}`
	a, err := AttributesFromJSON([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.RescaleIntercept != -1024 || a.RescaleSlope != 1 || !reflect.DeepEqual(a.Windows, []Window{{40, 400, "LINEAR"}}) {
		t.Errorf("shared groups: %+v", a)
	}
	wantPF := []FrameValues{{}, {HasRescale: true, RescaleSlope: 2, RescaleIntercept: -1000,
		Windows: []Window{{50, 500, "SIGMOID"}, {60, 600, "SIGMOID"}}}}
	if !reflect.DeepEqual(a.PerFrame, wantPF) {
		t.Errorf("per-frame: %+v", a.PerFrame)
	}
	f2 := a.ForFrame(2)
	if f2.RescaleSlope != 2 || f2.RescaleIntercept != -1000 || f2.Windows[0].Function != "SIGMOID" || a.RescaleSlope != 1 {
		t.Errorf("frame 2: %+v (frame 1 %+v)", f2, a)
	}
	// Top-level values win over the shared groups.
	top := strings.Replace(js, `"00280004"`, `"00281052": {"vr": "DS", "Value": [5]}, "00281050": {"vr": "DS", "Value": [1]},
	  "00281051": {"vr": "DS", "Value": [2]}, "00280004"`, 1)
	a, err = AttributesFromJSON([]byte(top), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.RescaleIntercept != 5 || a.RescaleSlope != 1 || a.Windows[0] != (Window{1, 2, "LINEAR"}) {
		t.Errorf("top level: %+v", a)
	}
}

// A JSON round trip through Render: a 2x2 CT with a modality LUT from InlineBinary.
func TestAttributesFromJSONRender(t *testing.T) {
	js := fmt.Sprintf(`{"00280010": {"vr": "US", "Value": [2]}, "00280011": {"vr": "US", "Value": [2]},
	  "00280100": {"vr": "US", "Value": [16]}, "00280101": {"vr": "US", "Value": [16]}, "00280102": {"vr": "US", "Value": [15]},
	  "00280103": {"vr": "US", "Value": [0]}, "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
	  "00283000": {"vr": "SQ", "Value": [{"00283002": {"vr": "US", "Value": [4, 0, 16]},
	     "00283006": {"vr": "OW", "InlineBinary": %q}}]},
	  "00281050": {"vr": "DS", "Value": [150]}, "00281051": {"vr": "DS", "Value": [101]}}`, b64words(0, 100, 200, 300))
	a, err := AttributesFromJSON([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	// LUT 0,100,200,300 then window 150/101: ((x-149.5)/100+0.5)*255 between 99.5 and 199.5.
	got := grayOf(t)(Render(le16s(0, 1, 2, 9), a, Options{}))
	if want := []uint8{0, 1, 255, 255}; !reflect.DeepEqual(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}

package scp

import (
	"bytes"
	"testing"
)

func TestNegotiate(t *testing.T) {
	s := &Server{cfg: Config{SOPClasses: []string{"1.2.3.99"}}}
	tests := []struct {
		abstract string
		proposed []string
		result   byte
		accepted string
	}{
		{verification, []string{tsImplicitLE}, pcAccepted, tsImplicitLE},
		{sopClassSC, []string{"1.2.840.10008.1.2.4.100", tsJPEGLossless, tsExplicitLE}, pcAccepted, tsJPEGLossless},
		{sopClassSC, []string{tsImplicitLE, tsExplicitLE}, pcAccepted, tsImplicitLE},
		{"1.2.840.10008.5.1.4.1.1.1.1", []string{"1.2.840.10008.1.2.4.203"}, pcAccepted, "1.2.840.10008.1.2.4.203"},
		{"1.2.3.99", []string{"1.2.840.10008.1.2.5"}, pcAccepted, "1.2.840.10008.1.2.5"},
		{sopClassSC, []string{"1.2.840.10008.1.2.4.100"}, pcTransferNotSupported, ""},
		{"1.2.840.10008.5.1.4.1.2.1.1", []string{tsImplicitLE}, pcAbstractNotSupported, ""}, // C-FIND
		{"1.2.840.10008.5.1.4.1.1.", []string{tsImplicitLE}, pcAbstractNotSupported, ""},
	}
	for _, tt := range tests {
		pc := presentationContext{ID: 1, AbstractSyntax: tt.abstract, TransferSyntax: tt.proposed}
		negotiate(s, &pc)
		if pc.Result != tt.result || pc.Accepted != tt.accepted {
			t.Errorf("%s %v: result %d %q, want %d %q", tt.abstract, tt.proposed, pc.Result, pc.Accepted, tt.result, tt.accepted)
		}
	}
}

func TestValidUID(t *testing.T) {
	for uid, want := range map[string]bool{
		"1.2.840.10008.1.2": true, "1": true, "": false, "1..2": false, ".1": false, "1.": false,
		"../x": false, "1.2/3": false, "1.2 ": false, string(bytes.Repeat([]byte("1"), 65)): false,
	} {
		if got := validUID(uid); got != want {
			t.Errorf("validUID(%q) = %v", uid, got)
		}
	}
}

func TestCommandRoundTrip(t *testing.T) {
	rq, err := parseCommand(storeRQ(42, sopClassSC, "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	want := command{Field: cStoreRQ, MessageID: 42, SOPClass: sopClassSC, SOPInstance: "1.2.3", hasDataSetType: true}
	if rq != want {
		t.Fatalf("parsed %+v, want %+v", rq, want)
	}
	rsp, err := parseCommand(responseTo(rq, statusOutOfResources, "disk full"))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Field != cStoreRQ|response || rsp.hasDataSet() || rsp.SOPInstance != "1.2.3" {
		t.Fatalf("response parsed as %+v", rsp)
	}
}

func TestPDataFragments(t *testing.T) {
	msg := bytes.Repeat([]byte("abc"), 5000)
	b := appendPData(nil, 5, false, msg, 4096)
	var got []byte
	var pdus int
	for r := bytes.NewReader(b); r.Len() > 0; pdus++ {
		typ, body, _, err := readPDU(r, nil, 4096)
		if err != nil || typ != pduPData {
			t.Fatalf("PDU %d: type %d err %v", pdus, typ, err)
		}
		forPDVs(body, func(v pdv) error {
			if v.Command || v.Context != 5 || v.Last != (len(got)+len(v.Data) == len(msg)) {
				t.Fatalf("PDV %+v", v)
			}
			got = append(got, v.Data...)
			return nil
		})
	}
	if !bytes.Equal(got, msg) || pdus != 4 {
		t.Fatalf("%d PDUs, message equal %v", pdus, bytes.Equal(got, msg))
	}
}

// FuzzPDU feeds PDUs from outside to the parsers an association uses.
func FuzzPDU(f *testing.F) {
	f.Add(appendAssociateRQ(testAE, "MODALITY", storePCs, 16384))
	f.Add(appendPData(nil, 3, true, storeRQ(1, sopClassSC, "1.2.3"), 0))
	f.Add(onePDV(1, 3, []byte{0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF}))
	f.Add(append(appendPDUHeader(nil, pduAbort, 4), 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, _, err := readPDU(bytes.NewReader(b), nil, 1<<16)
		if err != nil {
			return
		}
		switch typ {
		case pduAssociateRQ:
			rq, err := parseAssociateRQ(body)
			if err != nil {
				return
			}
			s := &Server{}
			for i := range rq.Contexts {
				negotiate(s, &rq.Contexts[i])
			}
			ac := associateAC(rq, DefaultMaxPDU)
			if typ, _, _, err := readPDU(bytes.NewReader(ac), nil, 1<<20); err != nil || typ != pduAssociateAC {
				t.Fatalf("A-ASSOCIATE-AC does not read back: %v", err)
			}
		case pduPData:
			forPDVs(body, func(v pdv) error {
				if c, err := parseCommand(v.Data); err == nil {
					if _, err := parseCommand(responseTo(c, statusSuccess, "")); err != nil {
						t.Fatalf("response to %+v does not parse: %v", c, err)
					}
				}
				return nil
			})
		}
	})
}

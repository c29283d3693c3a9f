package scp

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawConn is a minimal SCU written against the PDU encoders, to misbehave on purpose.
type rawConn struct {
	net.Conn
	t   *testing.T
	buf []byte
}

func appendAssociateRQ(called, calling string, pcs []presentationContext, maxPDU uint32) []byte {
	var v []byte
	v = binary.BigEndian.AppendUint16(v, 1)
	v = append(v, 0, 0)
	v = appendAE(v, called)
	v = appendAE(v, calling)
	v = append(v, make([]byte, 32)...)
	v = appendUIDItem(v, itemApplicationContext, applicationContextDICOM)
	for _, pc := range pcs {
		sub := []byte{pc.ID, 0, 0, 0}
		sub = appendUIDItem(sub, itemAbstractSyntax, pc.AbstractSyntax)
		for _, ts := range pc.TransferSyntax {
			sub = appendUIDItem(sub, itemTransferSyntax, ts)
		}
		v = appendItem(v, itemPresentationRQ, sub)
	}
	var ui []byte
	ui = appendItem(ui, itemMaxLength, binary.BigEndian.AppendUint32(nil, maxPDU))
	ui = appendUIDItem(ui, itemImplementationUID, "1.2.3.4")
	ui = appendItem(ui, 0x54, []byte{0, 3, '1', '.', '2', 0, 1}) // a sub-item to be ignored
	v = appendItem(v, itemUserInformation, ui)
	return append(appendPDUHeader(nil, pduAssociateRQ, len(v)), v...)
}

func dial(t *testing.T, ts *testServer) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, t: t}
}

// dialAssociate opens an association and returns the connection once accepted.
func dialAssociate(t *testing.T, ts *testServer, calling string, pcs []presentationContext) *rawConn {
	t.Helper()
	c := dial(t, ts)
	c.write(appendAssociateRQ(testAE, calling, pcs, 16384))
	typ, body := c.read()
	if typ != pduAssociateAC {
		t.Fatalf("got PDU type 0x%02x, want A-ASSOCIATE-AC", typ)
	}
	if len(body) < 68 || trimAE(body[4:20]) != testAE || trimAE(body[20:36]) != calling {
		t.Fatalf("A-ASSOCIATE-AC header %q", body[:min(len(body), 68)])
	}
	return c
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next PDU; type 0 means the server closed the connection.
func (c *rawConn) read() (byte, []byte) {
	c.t.Helper()
	typ, body, buf, err := readPDU(c.Conn, c.buf, 1<<20)
	c.buf = buf
	if err == io.EOF || err != nil && strings.Contains(err.Error(), "connection reset") {
		return 0, nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return typ, body
}

// response reads a P-DATA-TF holding a whole command set and returns its Status.
func (c *rawConn) response() uint16 {
	c.t.Helper()
	status, _ := c.responseComment()
	return status
}

// responseComment reads a DIMSE response: its Status and Error Comment (0000,0902).
func (c *rawConn) responseComment() (uint16, string) {
	c.t.Helper()
	comment := ""
	typ, body := c.read()
	if typ != pduPData {
		c.t.Fatalf("got PDU type 0x%02x, want P-DATA-TF", typ)
	}
	var status uint16 = 0xFFFF
	err := forPDVs(body, func(v pdv) error {
		if !v.Command || !v.Last {
			c.t.Fatalf("response PDV command %v last %v", v.Command, v.Last)
		}
		for b := v.Data; len(b) >= 8; {
			n := binary.LittleEndian.Uint32(b[4:])
			switch binary.LittleEndian.Uint32(b) {
			case 0x09000000:
				status = binary.LittleEndian.Uint16(b[8:])
			case 0x09020000:
				comment = strings.TrimRight(string(b[8:8+n]), " \x00")
			}
			b = b[8+n:]
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return status, comment
}

// onePDV is a P-DATA-TF of one PDV with message control header mch.
func onePDV(id, mch byte, data []byte) []byte {
	b := appendPDUHeader(nil, pduPData, 6+len(data))
	b = binary.BigEndian.AppendUint32(b, uint32(2+len(data)))
	return append(append(b, id, mch), data...)
}

func storeRQ(id uint16, sopClass, sopInstance string) []byte {
	return encodeCommand([]commandElement{
		{tagAffectedSOPClassUID, uidValue(sopClass)},
		{tagCommandField, u16Value(cStoreRQ)},
		{tagMessageID, u16Value(id)},
		{0x00000700, u16Value(0)}, // Priority
		{tagCommandDataSetType, u16Value(0)},
		{tagAffectedSOPInstanceUID, uidValue(sopInstance)},
	})
}

var storePCs = []presentationContext{
	{ID: 1, AbstractSyntax: verification, TransferSyntax: []string{tsImplicitLE}},
	{ID: 3, AbstractSyntax: sopClassSC, TransferSyntax: []string{"1.2.3.4.5", tsExplicitLE, tsImplicitLE}},
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkEcho(t *testing.T, ts *testServer) {
	t.Helper()
	c := dialAssociate(t, ts, "ECHO", storePCs)
	defer c.Close()
	echo := encodeCommand([]commandElement{
		{tagAffectedSOPClassUID, uidValue(verification)},
		{tagCommandField, u16Value(cEchoRQ)},
		{tagMessageID, u16Value(7)},
		{tagCommandDataSetType, u16Value(noDataSet)},
	})
	c.write(appendPData(nil, 1, true, echo, 0))
	if st := c.response(); st != statusSuccess {
		t.Fatalf("C-ECHO status 0x%04x", st)
	}
	c.write(append(appendPDUHeader(nil, pduReleaseRQ, 4), 0, 0, 0, 0))
	if typ, _ := c.read(); typ != pduReleaseRP {
		t.Fatalf("got PDU type 0x%02x, want A-RELEASE-RP", typ)
	}
}

func TestRawStore(t *testing.T) {
	ts := startServer(t, Config{})
	c := dialAssociate(t, ts, "RAW", storePCs)
	defer c.Close()
	uid := "1.2.3.4.5.6"
	data := testDataSet(sopClassSC, uid, 40000)

	// Command in two fragments, data set across several P-DATA-TFs within a 16 KiB PDU.
	cmd := storeRQ(1, sopClassSC, uid)
	c.write(onePDV(3, 1, cmd[:10]))
	c.write(onePDV(3, 3, cmd[10:]))
	c.write(appendPData(nil, 3, false, data, 16384))
	if st := c.response(); st != statusSuccess {
		t.Fatalf("C-STORE status 0x%04x", st)
	}
	waitFor(t, "OnStored", func() bool { return ts.storedCount() == 1 }) // once written out, after the response
	got, err := os.ReadFile(filepath.Join(ts.dir, incomingDir, uid+".dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dataSet(t, got), data) {
		t.Error("stored data set differs")
	}
	ts.mu.Lock()
	st := ts.stored[0]
	ts.mu.Unlock()
	if st.TransferSyntax != tsExplicitLE || st.CallingAE != "RAW" || st.Size != int64(len(got)) || st.SOPClass != sopClassSC {
		t.Errorf("OnStored got %+v", st)
	}

	// The same UID again replaces the file; a UID that is not one is refused.
	second := testDataSet(sopClassSC, uid, 200)
	c.write(appendPData(nil, 3, true, storeRQ(2, sopClassSC, uid), 0))
	c.write(appendPData(nil, 3, false, second, 0))
	if st := c.response(); st != statusSuccess {
		t.Fatalf("second C-STORE status 0x%04x", st)
	}
	waitFor(t, "OnStored", func() bool { return ts.storedCount() == 2 })
	if fi, err := os.Stat(filepath.Join(ts.dir, incomingDir, uid+".dcm")); err != nil || fi.Size() != int64(len(got)-len(data)+len(second)) {
		t.Errorf("duplicate not replaced: %v %v", fi, err)
	}
	c.write(appendPData(nil, 3, true, storeRQ(3, sopClassSC, "../../etc/x"), 0))
	c.write(appendPData(nil, 3, false, data[:100], 0))
	if st := c.response(); st != statusCannotUnderstand {
		t.Fatalf("C-STORE of a bad UID: status 0x%04x", st)
	}
	if names := listDir(t, filepath.Join(ts.dir, incomingDir)); len(names) != 1 {
		t.Errorf("incoming holds %v", names)
	}
}

// TestAbortMidTransfer: an instance cut short leaves nothing, whether it was being received
// into memory (for the spool) or into a file of its own (memLimit 1: every instance is "large").
func TestAbortMidTransfer(t *testing.T) {
	for _, how := range []string{"A-ABORT", "close", "A-ABORT/file", "close/file"} {
		t.Run(how, func(t *testing.T) {
			cfg := Config{}
			if strings.HasSuffix(how, "/file") {
				cfg.memLimit = 1
			}
			ts := startServer(t, cfg)
			c := dialAssociate(t, ts, "RAW", storePCs)
			c.write(appendPData(nil, 3, true, storeRQ(1, sopClassSC, "1.2.3"), 0))
			c.write(appendPData(nil, 3, false, make([]byte, 20000), 0)[:10000]) // half a PDU
			tmp := filepath.Join(ts.dir, tmpDir)
			if cfg.memLimit == 1 {
				waitFor(t, "the temporary file", func() bool { return len(listDir(t, tmp)) == 1 })
			}
			if strings.HasPrefix(how, "A-ABORT") {
				c.write(append(appendPDUHeader(nil, pduAbort, 4), 0, 0, 0, 0))
			}
			c.Close()
			waitFor(t, "the temporary file to go", func() bool { return len(listDir(t, tmp)) == 0 })
			if names := listDir(t, filepath.Join(ts.dir, incomingDir)); len(names) != 0 {
				t.Errorf("incoming holds %v", names)
			}
			checkEcho(t, ts)
		})
	}
}

func TestMalformed(t *testing.T) {
	big := binary.BigEndian.AppendUint32([]byte{pduPData, 0}, DefaultMaxPDU+1)
	tests := []struct {
		name      string
		associate bool
		send      []byte
	}{
		{"garbage", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"huge A-ASSOCIATE-RQ", false, []byte{pduAssociateRQ, 0, 0xFF, 0xFF, 0xFF, 0xF0, 1, 2}},
		{"short A-ASSOCIATE-RQ", false, []byte{pduAssociateRQ, 0, 0, 0, 0, 2, 0, 1}},
		{"P-DATA before association", false, appendPData(nil, 1, true, []byte{1, 2}, 0)},
		{"P-DATA over max PDU", true, big},
		{"unaccepted context", true, appendPData(nil, 5, true, storeRQ(1, sopClassSC, "1.2"), 0)},
		{"data without command", true, appendPData(nil, 3, false, []byte{1, 2}, 0)},
		{"bad PDV length", true, []byte{pduPData, 0, 0, 0, 0, 6, 0, 0, 0, 9, 3, 3}},
		{"bad command set", true, appendPData(nil, 3, true, []byte{0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF}, 0)},
		{"second A-ASSOCIATE-RQ", true, appendAssociateRQ(testAE, "RAW", storePCs, 0)},
	}
	ts := startServer(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *rawConn
			if tt.associate {
				c = dialAssociate(t, ts, "RAW", storePCs)
			} else {
				c = dial(t, ts)
			}
			defer c.Close()
			c.write(tt.send)
			typ, body := c.read()
			if typ != pduAbort && typ != 0 {
				t.Fatalf("got PDU type 0x%02x %x, want A-ABORT or close", typ, body)
			}
			if typ == pduAbort {
				if typ, _ := c.read(); typ != 0 {
					t.Fatalf("connection open after A-ABORT")
				}
			}
		})
	}
	checkEcho(t, ts)
	if names := listDir(t, filepath.Join(ts.dir, tmpDir)); len(names) != 0 {
		t.Errorf("tmp holds %v", names)
	}
}

// TestDrain cancels Serve's context with one association idle and one mid-instance: the
// idle one is aborted, the other completes its C-STORE first.
func TestDrain(t *testing.T) {
	ts := startServer(t, Config{memLimit: 1}) // so that the partial instance shows as a file
	idle := dialAssociate(t, ts, "IDLE", storePCs)
	defer idle.Close()
	busy := dialAssociate(t, ts, "BUSY", storePCs)
	defer busy.Close()
	pd := appendPData(nil, 3, false, testDataSet(sopClassSC, "1.2.3", 1000), 0)
	busy.write(appendPData(nil, 3, true, storeRQ(1, sopClassSC, "1.2.3"), 0))
	busy.write(pd[:500])
	waitFor(t, "the temporary file", func() bool { return len(listDir(t, filepath.Join(ts.dir, tmpDir))) == 1 })

	ts.cancel()
	if typ, _ := idle.read(); typ != pduAbort {
		t.Fatalf("idle association got PDU type 0x%02x, want A-ABORT", typ)
	}
	select {
	case <-ts.done:
		t.Fatal("Serve returned with a C-STORE in progress")
	case <-time.After(50 * time.Millisecond):
	}
	busy.write(pd[500:])
	if st := busy.response(); st != statusSuccess {
		t.Fatalf("C-STORE status 0x%04x", st)
	}
	if typ, _ := busy.read(); typ != pduAbort {
		t.Fatalf("busy association got PDU type 0x%02x after its response, want A-ABORT", typ)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatal(err)
		}
		ts.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := os.Stat(filepath.Join(ts.dir, incomingDir, "1.2.3.dcm")); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Listen(Config{AETitle: testAE, Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(appendAssociateRQ(testAE, "X", storePCs, 0))
	if _, _, _, err := readPDU(c, nil, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != ErrClosed {
		t.Fatalf("Serve returned %v, want ErrClosed", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, Config{IdleTimeout: 100 * time.Millisecond})
	c := dialAssociate(t, ts, "RAW", storePCs)
	defer c.Close()
	if typ, _ := c.read(); typ != pduAbort {
		t.Fatalf("got PDU type 0x%02x, want A-ABORT", typ)
	}
	checkEcho(t, ts)
}

// testDataSet is an explicit VR little endian data set with the UIDs a C-STORE needs and an
// OB Pixel Data padding it to about size bytes.
func testDataSet(sopClass, sopInstance string, size int) []byte {
	var b []byte
	b = appendMetaElement(b, 0x00080016, "UI", []byte(sopClass), 0)
	b = appendMetaElement(b, 0x00080018, "UI", []byte(sopInstance), 0)
	b = appendMetaElement(b, 0x0020000D, "UI", []byte("1.2.826.0.1.3680043.9.7777.1"), 0)
	b = appendMetaElement(b, 0x0020000E, "UI", []byte("1.2.826.0.1.3680043.9.7777.2"), 0)
	return appendMetaElement(b, 0x7FE00010, "OB", bytes.Repeat([]byte{1, 2, 3, 4}, max(size-len(b)-12, 0)/4), 0)
}

// TestStoreRefusesUnusableData: a C-STORE whose data set cannot be used later (random bytes,
// a PDF, no Study Instance UID, another SOP Instance or SOP Class than the command names) is
// answered with a failure status and a reason, and nothing reaches incoming: a modality that
// deletes what it was told was stored keeps these.
func TestStoreRefusesUnusableData(t *testing.T) {
	random := make([]byte, 60000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	noStudy := testDataSet(sopClassSC, "1.2.3.9", 1000)
	noStudy = bytes.Replace(noStudy, []byte("1.2.826.0.1.3680043.9.7777.1"), []byte("not-a-uid-not-a-uid-not-a-ui"), 1)
	for _, memLimit := range []int{0, 1} { // in memory (the spool), and in a file of its own
		ts := startServer(t, Config{memLimit: memLimit})
		c := dialAssociate(t, ts, "RAW", storePCs)
		for i, tc := range []struct {
			name      string
			data      []byte
			class     string
			status    uint16
			inComment string
		}{
			{"60 KB of random bytes", random, sopClassSC, statusCannotUnderstand, ""},
			{"a PDF", []byte("%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"), sopClassSC, statusCannotUnderstand, ""},
			{"no Study Instance UID", noStudy, sopClassSC, statusCannotUnderstand, "Study Instance UID"},
			{"another SOP Instance UID", testDataSet(sopClassSC, "1.2.3.999", 1000), sopClassSC, statusDataSetMismatch, "SOP Instance UID"},
			{"another SOP Class", testDataSet("1.2.840.10008.5.1.4.1.1.2", "1.2.3.9", 1000), sopClassSC, statusDataSetMismatch, "SOP Class"},
		} {
			c.write(appendPData(nil, 3, true, storeRQ(uint16(i+1), tc.class, "1.2.3.9"), 0))
			c.write(appendPData(nil, 3, false, tc.data, 16384))
			status, comment := c.responseComment()
			if status != tc.status || !strings.Contains(comment, tc.inComment) || comment == "" {
				t.Errorf("memLimit %d, %s: status 0x%04x %q, want 0x%04x with %q", memLimit, tc.name, status, comment, tc.status, tc.inComment)
			}
		}
		// The association goes on: a good instance after them is stored.
		c.write(appendPData(nil, 3, true, storeRQ(9, sopClassSC, "1.2.3.9"), 0))
		c.write(appendPData(nil, 3, false, testDataSet(sopClassSC, "1.2.3.9", 1000), 16384))
		if st := c.response(); st != statusSuccess {
			t.Fatalf("a good instance after the refused ones: 0x%04x", st)
		}
		waitFor(t, "the good instance written out", func() bool { return ts.storedCount() == 1 })
		if names := listDir(t, filepath.Join(ts.dir, incomingDir)); len(names) != 1 || names[0] != "1.2.3.9.dcm" {
			t.Errorf("incoming holds %v", names)
		}
		if names := listDir(t, filepath.Join(ts.dir, tmpDir)); len(names) != 0 {
			t.Errorf("tmp holds %v", names)
		}
		c.Close()
	}
}

package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeCine writes a multi-frame RGB ultrasound file of frames x (rows x cols x 3) bytes in
// explicit VR little endian, streaming the pixel data.
func writeCine(t *testing.T, path string, rows, cols, frames int) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	le := binary.LittleEndian
	elem := func(g, e uint16, vr string, val []byte) {
		if len(val)%2 == 1 {
			pad := byte(' ')
			if vr == "UI" || vr == "OB" {
				pad = 0
			}
			val = append(val, pad)
		}
		var h []byte
		h = le.AppendUint16(h, g)
		h = le.AppendUint16(h, e)
		h = append(h, vr...)
		switch vr {
		case "OB", "OW", "SQ", "UN", "UT":
			h = append(h, 0, 0)
			h = le.AppendUint32(h, uint32(len(val)))
		default:
			h = le.AppendUint16(h, uint16(len(val)))
		}
		w.Write(h)
		w.Write(val)
	}
	us := func(v int) []byte { return le.AppendUint16(nil, uint16(v)) }
	sop := "2.25.4242424242.1.1"
	w.Write(make([]byte, 128))
	w.WriteString("DICM")
	var meta []byte
	{
		// group length is computed over the meta elements written into a side buffer
		mw := &metaBuf{}
		mw.elem(0x0001, "OB", []byte{0, 1})
		mw.elem(0x0002, "UI", []byte("1.2.840.10008.5.1.4.1.1.3.1"))
		mw.elem(0x0003, "UI", []byte(sop))
		mw.elem(0x0010, "UI", []byte("1.2.840.10008.1.2.1"))
		meta = mw.b
	}
	elem(0x0002, 0x0000, "UL", le.AppendUint32(nil, uint32(len(meta))))
	w.Write(meta)
	elem(0x0008, 0x0016, "UI", []byte("1.2.840.10008.5.1.4.1.1.3.1"))
	elem(0x0008, 0x0018, "UI", []byte(sop))
	elem(0x0008, 0x0060, "CS", []byte("US"))
	elem(0x0010, 0x0010, "PN", []byte("Cine^Large"))
	elem(0x0010, 0x0020, "LO", []byte("LARGE1"))
	elem(0x0020, 0x000D, "UI", []byte("2.25.4242424242"))
	elem(0x0020, 0x000E, "UI", []byte("2.25.4242424242.1"))
	elem(0x0028, 0x0002, "US", us(3))
	elem(0x0028, 0x0004, "CS", []byte("RGB"))
	elem(0x0028, 0x0006, "US", us(0))
	elem(0x0028, 0x0008, "IS", []byte(itoa(frames)))
	elem(0x0028, 0x0010, "US", us(rows))
	elem(0x0028, 0x0011, "US", us(cols))
	elem(0x0028, 0x0100, "US", us(8))
	elem(0x0028, 0x0101, "US", us(8))
	elem(0x0028, 0x0102, "US", us(7))
	elem(0x0028, 0x0103, "US", us(0))
	frameSize := rows * cols * 3
	var h []byte
	h = le.AppendUint16(h, 0x7FE0)
	h = le.AppendUint16(h, 0x0010)
	h = append(h, 'O', 'B', 0, 0)
	h = le.AppendUint32(h, uint32(frameSize*frames))
	w.Write(h)
	frame := make([]byte, frameSize)
	for i := range frames {
		for j := range frame {
			frame[j] = byte(i + j)
		}
		w.Write(frame)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	return st.Size()
}

type metaBuf struct{ b []byte }

func (m *metaBuf) elem(e uint16, vr string, val []byte) {
	le := binary.LittleEndian
	if len(val)%2 == 1 {
		val = append(val, 0)
	}
	m.b = le.AppendUint16(m.b, 0x0002)
	m.b = le.AppendUint16(m.b, e)
	m.b = append(m.b, vr...)
	if vr == "OB" {
		m.b = append(m.b, 0, 0)
		m.b = le.AppendUint32(m.b, uint32(len(val)))
	} else {
		m.b = le.AppendUint16(m.b, uint16(len(val)))
	}
	m.b = append(m.b, val...)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// TestIngestLargeCineStreams ingests a 300 MB multi-frame ultrasound file and checks that the
// heap never grows by more than a small multiple of one frame (0.9 MB) beyond fixed buffers.
func TestIngestLargeCineStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 300 MB")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "cine.dcm")
	const rows, cols, frames = 480, 640, 330 // 921,600 bytes a frame, 304 MB
	size := writeCine(t, src, rows, cols, frames)
	st, err := Open(context.Background(), Config{Dir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Ingest(context.Background(), f, "")
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("ingested %d MB; heap in use grew by at most %.1f MB", size>>20, float64(growth)/(1<<20))
	// Fixed buffers: 4 MiB in-memory prefix, 256 KiB copy buffer, 64 KiB layout window.
	if growth > 24<<20 {
		t.Fatalf("heap grew by %d MB while ingesting a %d MB file", growth>>20, size>>20)
	}
	ins, err := st.Instances(context.Background(), res.StudyInstanceUID, res.SeriesInstanceUID, res.SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if ins[0].Size != size || !ins[0].Frames.Valid || ins[0].Frames.Int64 != frames {
		t.Fatalf("indexed size %d frames %v, want %d and %d", ins[0].Size, ins[0].Frames, size, frames)
	}
	l, err := st.Layout(context.Background(), ins[0].PK)
	if err != nil {
		t.Fatal(err)
	}
	// Frame 100's bytes are where the layout says.
	fr := l.Frames[99]
	stored, _ := os.Open(st.FilePath(&ins[0]))
	defer stored.Close()
	buf := make([]byte, fr.Size())
	if _, err := stored.ReadAt(buf, fr[0].Offset); err != nil {
		t.Fatal(err)
	}
	for j := range buf {
		if buf[j] != byte(99+j) {
			t.Fatalf("frame 100 byte %d = %d, want %d", j, buf[j], byte(99+j))
		}
	}
}

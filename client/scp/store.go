package scp

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"

	"github.com/sanping/sanping/internal/durable"
)

// File Meta Information elements, PS3.10 section 7.1.
const (
	tagFileMetaInformationGroupLength = 0x00020000
	tagFileMetaInformationVersion     = 0x00020001
	tagMediaStorageSOPClassUID        = 0x00020002
	tagMediaStorageSOPInstanceUID     = 0x00020003
	tagTransferSyntaxUID              = 0x00020010
	tagImplementationClassUID         = 0x00020012
	tagImplementationVersionName      = 0x00020013
	tagSourceApplicationEntityTitle   = 0x00020016
)

// validUID reports whether uid is safe as a file name and well formed per PS3.5 section 9.1:
// digits and dots, at most 64 characters, no empty component.
func validUID(uid string) bool {
	if uid == "" || len(uid) > 64 || uid[0] == '.' || uid[len(uid)-1] == '.' {
		return false
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if c == '.' && uid[i-1] == '.' {
			return false
		}
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func appendMetaElement(b []byte, tag uint32, vr string, v []byte, pad byte) []byte {
	if len(v)%2 == 1 {
		v = append(v[:len(v):len(v)], pad)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = append(b, vr...)
	if vr == "OB" {
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}

// fileMeta returns the preamble, "DICM" prefix and File Meta Information (explicit VR little
// endian whatever the data set's transfer syntax), PS3.10 section 7.1.
func fileMeta(sopClass, sopInstance, transferSyntax, sourceAE string) []byte {
	var g []byte
	g = appendMetaElement(g, tagFileMetaInformationVersion, "OB", []byte{0, 1}, 0)
	g = appendMetaElement(g, tagMediaStorageSOPClassUID, "UI", []byte(sopClass), 0)
	g = appendMetaElement(g, tagMediaStorageSOPInstanceUID, "UI", []byte(sopInstance), 0)
	g = appendMetaElement(g, tagTransferSyntaxUID, "UI", []byte(transferSyntax), 0)
	g = appendMetaElement(g, tagImplementationClassUID, "UI", []byte(ImplementationClassUID), 0)
	g = appendMetaElement(g, tagImplementationVersionName, "SH", []byte(ImplementationVersionName), ' ')
	if sourceAE != "" {
		g = appendMetaElement(g, tagSourceApplicationEntityTitle, "AE", []byte(sourceAE), ' ')
	}
	b := make([]byte, 128, 128+4+12+len(g))
	b = append(b, "DICM"...)
	b = appendMetaElement(b, tagFileMetaInformationGroupLength, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(g))), 0)
	return append(b, g...)
}

// instanceFile is an instance being received. Up to memLimit bytes it is held in memory and
// goes to the spool when complete; a larger one spills to a temporary file in Dir/tmp that
// becomes Dir/incoming/<SOPInstanceUID>.dcm once complete and durable.
type instanceFile struct {
	buf    []byte // nil once let go: the writer reads it back from the spool (rec)
	rec    record // in the spool until written out
	f      *os.File
	disk   disk
	dir    string
	stored Stored
	limit  int   // held in memory up to this size
	err    error // first write error; later fragments are dropped
	// replayed: acknowledged by an earlier run, found in the spool at start (no OnStored).
	replayed bool
}

func createInstance(d disk, dir string, st Stored, buf []byte, limit int) *instanceFile {
	in := &instanceFile{buf: buf[:0], disk: d, dir: dir, stored: st, limit: limit}
	in.write(fileMeta(st.SOPClass, st.SOPInstance, st.TransferSyntax, st.CallingAE))
	return in
}

func (in *instanceFile) write(p []byte) {
	if in.err != nil {
		return
	}
	if in.f == nil && len(in.buf)+len(p) <= in.limit {
		in.buf = append(in.buf, p...)
		in.stored.Size += int64(len(p))
		return
	}
	if in.f == nil {
		f, err := os.CreateTemp(filepath.Join(in.dir, tmpDir), "rx-*"+partSuffix)
		if err != nil {
			in.err = err
			return
		}
		in.f = f
		_, in.err = in.disk.write(f, in.buf)
		in.buf = in.buf[:0]
		if in.err != nil {
			return
		}
	}
	n, err := in.disk.write(in.f, p)
	in.stored.Size += int64(n)
	in.err = err
}

// commit makes the instance durable. One held in memory is appended to the spool and then
// written out to Dir/incoming; a file is fsynced, renamed over any earlier copy of the same
// SOP Instance UID (atomic) and its directory fsynced.
func (in *instanceFile) commit(sp *spool) (Stored, error) {
	if in.f == nil {
		if in.err != nil {
			return Stored{}, in.err
		}
		rec, err := sp.append(in.stored.SOPInstance, in.buf)
		if err != nil {
			return Stored{}, err
		}
		in.rec = rec
		return in.stored, nil
	}
	err := in.err
	if err == nil {
		err = in.f.Sync()
	}
	if cerr := in.f.Close(); err == nil {
		err = cerr
	}
	final := filepath.Join(in.dir, incomingDir, in.stored.SOPInstance+".dcm")
	if err == nil {
		err = in.disk.rename(in.f.Name(), final)
	}
	if err == nil {
		err = durable.SyncDir(filepath.Join(in.dir, incomingDir))
	}
	if err != nil {
		os.Remove(in.f.Name())
		return Stored{}, err
	}
	in.stored.Path = final
	return in.stored, nil
}

func (in *instanceFile) discard() {
	if in.f != nil {
		in.f.Close()
		os.Remove(in.f.Name())
	}
}

// removeStaleParts deletes partial instances left by a process that stopped mid-transfer;
// none of them was acknowledged, so the modality still has them.
func removeStaleParts(dir string) error {
	parts, err := filepath.Glob(filepath.Join(dir, tmpDir, "*"+partSuffix))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range parts {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

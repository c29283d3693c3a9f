package protocol

// The result of a resumable upload (server/upload, /api/uploads/{id}/result), which the
// station's uploader (client/upload) reads: what became of each file.

// TarSHA256 is the PAX record of a tar member that holds the SHA-256 of its content in hex. The
// server refuses a member whose content does not match it (a file failed with "checksum
// mismatch: ..."); members without it are taken as they are.
const TarSHA256 = "SANPING.sha256"

// TarCoding is the PAX record of a tar member whose bytes are a coding of the Part 10 file
// (CodingZstd); TarSHA256 and TarSize are then the decoded file's. The server refuses a
// member of a coding it does not know, or whose decoding is not TarSize bytes that hash to
// TarSHA256.
const TarCoding = "SANPING.coding"

// TarSize is the PAX record of a coded member that holds the decoded file's size in bytes.
const TarSize = "SANPING.size"

// CodingZstd: the member is one zstd stream (RFC 8878) of the Part 10 file.
const CodingZstd = "zstd"

// MetaSHA256 is the key of tus Upload-Metadata that holds the SHA-256 (hex) of an upload of
// one Part 10 file, checked as TarSHA256 is.
const MetaSHA256 = "sha256"

// Outcomes of one file of an upload.
const (
	OutcomeStored        = "stored"
	OutcomeAlreadyStored = "already-stored"
	OutcomeConflict      = "conflict" // another object is stored under the SOP Instance UID; see Error
	OutcomeFailed        = "failed"
)

// UploadFile is what became of one file of an upload (a tar member, or the upload itself).
type UploadFile struct {
	Name             string   `json:"name"`
	SOPInstanceUID   string   `json:"sopInstanceUID,omitempty"`
	StudyInstanceUID string   `json:"studyInstanceUID,omitempty"`
	Outcome          string   `json:"outcome"`
	Error            string   `json:"error,omitempty"`
	SHA256           string   `json:"sha256,omitempty"`
	Warnings         []string `json:"warnings,omitempty"`
}

// UploadResult is what became of an upload, saved when its last byte arrives.
type UploadResult struct {
	Upload        string       `json:"upload"`
	Files         []UploadFile `json:"files"`
	Stored        int          `json:"stored"`
	AlreadyStored int          `json:"alreadyStored"`
	Conflicts     int          `json:"conflicts"`
	Failed        int          `json:"failed"`
}

// Add records one file's outcome.
func (r *UploadResult) Add(f UploadFile) {
	switch f.Outcome {
	case OutcomeStored:
		r.Stored++
	case OutcomeAlreadyStored:
		r.AlreadyStored++
	case OutcomeConflict:
		r.Conflicts++
	default:
		r.Failed++
	}
	r.Files = append(r.Files, f)
}

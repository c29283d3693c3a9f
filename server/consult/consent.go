package consult

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"os"
	"path/filepath"
	"strings"

	"github.com/sanping/sanping/internal/durable"
	"github.com/sanping/sanping/server/auth"
)

// DefaultMaxConsentForm bounds a consent form when SetConsentForm is given no limit.
const DefaultMaxConsentForm = 20 << 20

// consentMagic returns the bytes a consent form of the media type starts with; only PDF,
// JPEG and PNG (a scan or a photo of the signed paper) are taken.
func consentMagic(mediaType string) (magic, ext string, ok bool) {
	switch mediaType {
	case "application/pdf":
		return "%PDF-", ".pdf", true
	case "image/jpeg":
		return "\xff\xd8\xff", ".jpg", true
	case "image/png":
		return "\x89PNG\r\n\x1a\n", ".png", true
	}
	return "", "", false
}

// consentOpen: the consent form may be (re)placed until the live session starts.
func consentOpen(st State) bool { return st == Requested || st == Accepted || st == Scheduled }

// SetConsentForm stores the patient's signed informed consent form read from r (at most
// maxSize bytes; DefaultMaxConsentForm when maxSize <= 0) and attaches it to the
// consultation, replacing an earlier one, while the state is requested, accepted or
// scheduled. Files are kept under their SHA-256 in dataDir/consent; a replaced one stays.
func (s *Service) SetConsentForm(ctx context.Context, by *auth.Principal, id int64, name, contentType string, r io.Reader, maxSize int64) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	magic, ext, ok := consentMagic(mediaType)
	if err != nil || !ok {
		return nil, invalid("contentType", "must be application/pdf, image/jpeg or image/png")
	}
	name = strings.TrimSpace(name[strings.LastIndexAny(name, `/\`)+1:]) // a name, not a client's path
	if err := checkLine("name", name, maxAttachmentName, false); err != nil {
		return nil, err
	}
	if name == "" {
		name = "consent" + ext
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxConsentForm
	}
	// Checked before the upload is stored too, so a refused one leaves no file behind.
	cur, err := current(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	if !consentOpen(cur.state) {
		return nil, fmt.Errorf("%w: the consent form is set before the live session; the consultation is %s", ErrConflict, cur.state)
	}
	br := bufio.NewReader(r)
	head, err := br.Peek(len(magic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("consult: receiving consent form: %w", err)
	}
	if string(head) != magic {
		return nil, invalid("file", "the content is not %s", mediaType)
	}
	sum, size, err := s.storeConsent(br, maxSize)
	if err != nil {
		return nil, err
	}
	var c *Consultation
	var prev sql.NullString
	err = s.write(ctx, func(tx *sql.Tx) error {
		var st State
		if err := tx.QueryRowContext(ctx, `SELECT state, consent_sha256 FROM consultations WHERE id = ?`, id).Scan(&st, &prev); err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		// A refusal here leaves the stored file: it is named by its content, harmless, and
		// possibly another consultation's too.
		if !consentOpen(st) {
			return fmt.Errorf("%w: the consent form is set before the live session; the consultation is %s", ErrConflict, st)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE consultations SET consent_name = ?, consent_content_type = ?,
			consent_size = ?, consent_sha256 = ?, updated_at = ? WHERE id = ?`,
			name, mediaType, size, sum, s.clock().UnixMilli(), id); err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		var err error
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, s.audit(ctx, by, id, event{"consultation.consent.upload", "success", detail(
		"sha256", sum, "size", size, "type", mediaType, "name", name, "replaces", prev.String)})
}

// storeConsent writes r durably to consent/<sha256>: a temporary file, fsynced, renamed,
// and the directory fsynced. Nothing is left behind on failure.
func (s *Service) storeConsent(r io.Reader, maxSize int64) (sum string, size int64, err error) {
	f, err := os.CreateTemp(s.consentDir, ".upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("consult: storing consent form: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	if maxSize < math.MaxInt64 {
		r = io.LimitReader(r, maxSize+1)
	}
	if size, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", 0, fmt.Errorf("consult: receiving consent form: %w", err)
	}
	if size > maxSize {
		return "", 0, invalid("file", "too large: more than %d bytes", maxSize)
	}
	if err = f.Sync(); err != nil {
		return "", 0, fmt.Errorf("consult: storing consent form: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", 0, fmt.Errorf("consult: storing consent form: %w", err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if err = os.Rename(f.Name(), filepath.Join(s.consentDir, sum)); err != nil {
		return "", 0, fmt.Errorf("consult: storing consent form: %w", err)
	}
	if err = durable.SyncDir(s.consentDir); err != nil {
		return "", 0, fmt.Errorf("consult: storing consent form: %w", err)
	}
	return sum, size, nil
}

// ConsentForm returns a consultation's consent form and its content; the caller closes it.
func (s *Service) ConsentForm(ctx context.Context, id int64) (*Attachment, io.ReadCloser, error) {
	var name, ctype, sha sql.NullString
	var size sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT consent_name, consent_content_type, consent_size, consent_sha256
		FROM consultations WHERE id = ?`, id).Scan(&name, &ctype, &size, &sha)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: consultation %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("consult: %w", err)
	}
	if !sha.Valid {
		return nil, nil, fmt.Errorf("%w: consultation %d has no consent form", ErrNotFound, id)
	}
	if _, err := hex.DecodeString(sha.String); err != nil || len(sha.String) != 2*sha256.Size {
		return nil, nil, fmt.Errorf("consult: consultation %d: bad consent form hash %q", id, sha.String)
	}
	f, err := os.Open(filepath.Join(s.consentDir, sha.String))
	if err != nil {
		return nil, nil, fmt.Errorf("consult: consent form of consultation %d: %w", id, err)
	}
	return &Attachment{Name: name.String, ContentType: ctype.String, Size: size.Int64, SHA256: sha.String}, f, nil
}

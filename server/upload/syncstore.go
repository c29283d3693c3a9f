package upload

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/sanping/sanping/internal/durable"
)

// syncedStore is tusd's filestore with each PATCH's bytes made durable (fdatasync) before
// tusd answers with the new Upload-Offset: an offset the client was told is never lost to a
// crash, so the client does not need to keep what it sent. The filestore itself never syncs.
type syncedStore struct {
	filestore.FileStore
	svc *Service
}

func (s syncedStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.FileStore.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return syncedUpload{Upload: up, svc: s.svc}, nil
}

func (s syncedStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.FileStore.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return syncedUpload{Upload: up, svc: s.svc}, nil
}

func (s syncedStore) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	if su, ok := up.(syncedUpload); ok {
		up = su.Upload
	}
	return s.FileStore.AsTerminatableUpload(up)
}

type syncedUpload struct {
	handler.Upload
	svc *Service
}

// WriteChunk streams an upload's first PATCH into the store when it is a tar (stream.go), and
// otherwise writes to the data file.
func (u syncedUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	if offset == 0 && u.svc != nil {
		if n, ok, err := u.streamChunk(ctx, src); ok {
			return n, err
		}
	}
	return u.writeFile(ctx, src)
}

// writeFile appends as the filestore does (keeping what arrived of a PATCH cut short), then
// fdatasyncs the data file, unless the upload is now complete: the PATCH that completes it is
// answered only once its instances are in the store (synced there), and the data file is
// removed right after, usually before the kernel has written it at all. A crash before that
// answer leaves a data file whose size (the offset HEAD tells) covers only data on disk.
func (u syncedUpload) writeFile(ctx context.Context, src io.Reader) (int64, error) {
	info, err := u.Upload.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	n, err := u.Upload.WriteChunk(ctx, info.Offset, src)
	if n == 0 {
		return n, err
	}
	// The filestore takes the offset from the file's size: n stays counted even if the sync
	// fails, and the PATCH fails with it.
	info, serr := u.Upload.GetInfo(ctx)
	if serr == nil && info.Offset == info.Size {
		return n, err
	}
	if serr == nil {
		var f *os.File
		if f, serr = os.OpenFile(info.Storage[filestore.StorageKeyPath], os.O_WRONLY, 0); serr == nil {
			serr = durable.DataSync(f)
			f.Close()
		}
	}
	if serr != nil {
		return n, fmt.Errorf("syncing the upload: %w", serr)
	}
	return n, err
}

package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/sanping/sanping/protocol"
)

// Report is the status as the station reports it to the server (its queue and last results;
// the spool is the SCP's to add).
func (st Status) Report() protocol.StationStatus {
	r := protocol.StationStatus{
		Queue:       protocol.StationQueue{Bundles: st.PendingBundles, Files: st.PendingFiles, Bytes: st.PendingBytes},
		LastSuccess: st.LastSuccess,
	}
	if st.LastError != "" {
		r.LastError = &protocol.StationError{Time: st.LastErrorAt, Message: protocol.CutStationError(st.LastError)}
	}
	return r
}

// SendStatus posts a station's report (POST /api/station/status) with cfg's server, token and
// HTTP client. The caller bounds it with ctx.
func SendStatus(ctx context.Context, cfg Config, st protocol.StationStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Server+"/api/station/status", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reporting status: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode, Detail: "POST /api/station/status: " + problemDetail(body)}
	}
	return nil
}

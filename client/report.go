package client

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/sanping/sanping/client/scp"
	"github.com/sanping/sanping/client/upload"
	"github.com/sanping/sanping/protocol"
)

// reportEvery is how often a watching station reports its status to the server.
const reportEvery = time.Minute

// stationReporter sends the station's status (what `sanping-station status` shows) to the
// server every minute and after each upload attempt, best effort: a report that fails is
// logged and the next one tries again, and nothing waits for it.
type stationReporter struct {
	cfg   upload.Config // server, token, journal directory, HTTP client
	spool string        // the SCP's -dir, "" when there is none
	every time.Duration
	log   *slog.Logger
	kick  chan struct{}
}

func newStationReporter(cfg upload.Config, spool string, log *slog.Logger) *stationReporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stationReporter{cfg: cfg, spool: spool, every: reportEvery, log: log, kick: make(chan struct{}, 1)}
}

// attempted is WatchConfig.AfterAttempt: a report follows soon, without holding up the upload.
func (r *stationReporter) attempted(error) {
	select {
	case r.kick <- struct{}{}:
	default: // one is due already
	}
}

// run reports at once, then every r.every and when kicked, until ctx ends.
func (r *stationReporter) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	failing := false
	for {
		err := r.send(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Once per outage: the uploads' own warnings say more about the link.
			r.log.Warn("status report not sent; trying again", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// send reports once, within 30 s.
func (r *stationReporter) send(ctx context.Context) error {
	st, err := stationStatus(r.cfg.JournalDir, r.spool)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return upload.SendStatus(ctx, r.cfg, st)
}

// stationStatus is the report of a journal directory ("" the default one) and an SCP spool
// ("" or one where no SCP has run: none).
func stationStatus(journal, spool string) (protocol.StationStatus, error) {
	if journal == "" {
		d, err := upload.DefaultJournalDir()
		if err != nil {
			return protocol.StationStatus{}, err
		}
		journal = d
	}
	st, err := upload.ReadStatus(journal)
	if err != nil {
		return protocol.StationStatus{}, err
	}
	report := st.Report()
	if spool != "" {
		sp, err := scp.ReadState(spool)
		switch {
		case err == nil:
			report.Spool = sp.Report()
		case !errors.Is(err, fs.ErrNotExist):
			return report, err
		}
	}
	return report, nil
}

// watchReporting runs upload.Watch with a reporter beside it, which ends with it.
func watchReporting(ctx context.Context, wc upload.WatchConfig, spool string) error {
	r := newStationReporter(wc.Config, spool, wc.Logger)
	wc.AfterAttempt = r.attempted
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	err := upload.Watch(ctx, wc)
	cancel()
	<-done
	return err
}

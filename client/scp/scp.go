// Package scp is the station's DICOM storage service class provider: the modality (DR X-ray,
// ultrasound, CT) sends images to it by C-STORE. Each instance is durable on disk before the
// modality hears success, and appears whole as a Part 10 file in Dir/incoming right after,
// where another part of the station forwards it to the server. Instances up to a few MB are
// made durable in a write-ahead spool (spool.go), larger ones in a file of their own.
//
// The upper layer (PS3.8) and the DIMSE messages it needs (PS3.7 C-ECHO, C-STORE) are written
// here by hand, because the station must decide when each response goes: only after the
// instance is durable, with one fdatasync shared by the associations running at once (the
// spool), and with its own limits and timeouts against a hostile or broken peer. The subset
// is small. The bytes received are written after a File Meta Information group built from
// the command set and the presentation context; the start of each data set is read
// (check.go) so that success is only answered for what can be stored later. A second
// instance with the same SOP Instance UID replaces the first atomically (rename).
package scp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ImplementationClassUID and ImplementationVersionName identify this SCP in the A-ASSOCIATE-AC
// and in the File Meta Information of the files it writes (a UUID-derived UID, PS3.5 B.2).
const (
	ImplementationClassUID    = "2.25.19112485961387064488760028495859993144"
	ImplementationVersionName = "SANPING_SCP_1"
)

const (
	// DefaultMaxPDU is the largest P-DATA-TF variable field accepted, the most storescu allows.
	DefaultMaxPDU          = 131072
	DefaultMaxAssociations = 32
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultAddr            = ":11112" // the IANA port for DICOM

	artimTimeout  = 30 * time.Second // waiting for A-ASSOCIATE-RQ, PS3.8 section 9.1.5
	writeTimeout  = 30 * time.Second // per PDU sent
	minRQLimit    = 1 << 16          // an A-ASSOCIATE-RQ with 128 contexts needs ~20 KB
	tmpDir        = "tmp"
	incomingDir   = "incoming"
	partSuffix    = ".part"
	verification  = "1.2.840.10008.1.1"
	storagePrefix = "1.2.840.10008.5.1.4.1.1."
	tsImplicitLE  = "1.2.840.10008.1.2"
)

// transferSyntaxes are those accepted, stored as received.
var transferSyntaxes = map[string]bool{
	"1.2.840.10008.1.2.1":     true, // explicit VR little endian
	tsImplicitLE:              true,
	"1.2.840.10008.1.2.2":     true, // explicit VR big endian (retired)
	"1.2.840.10008.1.2.1.99":  true, // deflated explicit VR little endian
	"1.2.840.10008.1.2.4.50":  true, // JPEG baseline
	"1.2.840.10008.1.2.4.51":  true, // JPEG extended
	"1.2.840.10008.1.2.4.57":  true, // JPEG lossless
	"1.2.840.10008.1.2.4.70":  true, // JPEG lossless SV1
	"1.2.840.10008.1.2.4.80":  true, // JPEG-LS lossless
	"1.2.840.10008.1.2.4.81":  true, // JPEG-LS near-lossless
	"1.2.840.10008.1.2.4.90":  true, // JPEG 2000 lossless
	"1.2.840.10008.1.2.4.91":  true, // JPEG 2000
	"1.2.840.10008.1.2.5":     true, // RLE lossless
	"1.2.840.10008.1.2.4.201": true, // HTJ2K lossless
	"1.2.840.10008.1.2.4.202": true, // HTJ2K lossless RPCL
	"1.2.840.10008.1.2.4.203": true, // HTJ2K
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("scp: server closed")

// Config configures a Server.
type Config struct {
	AETitle        string   // called AE title the modality must use
	Addr           string   // listen address; DefaultAddr if empty
	Dir            string   // instances go to Dir/incoming, partial ones to Dir/tmp
	AllowedCallers []string // calling AE titles accepted; any if empty
	// SOPClasses lists abstract syntaxes accepted besides Verification and those under
	// 1.2.840.10008.5.1.4.1.1 (storage), e.g. a private storage SOP class.
	SOPClasses      []string
	MaxPDU          uint32        // DefaultMaxPDU if 0
	MaxAssociations int           // DefaultMaxAssociations if 0
	IdleTimeout     time.Duration // between PDUs; DefaultIdleTimeout if 0
	// OnStored is called after each success response, once the instance is in Dir/incoming
	// (from the association's goroutine or the one writing instances out); it must not
	// block long.
	OnStored func(Stored)
	Logger   *slog.Logger
	// MinFree: below this many bytes free on Dir's disk the SCP warns (log and State); if 0,
	// 1 GiB or 5% of the disk, whichever is smaller.
	MinFree int64

	memLimit int   // instances up to this size go through the spool; memLimit if 0 (tests set it)
	segSize  int64 // of the spool's segments; segmentSize if 0 (tests set it)
	disk     disk  // osDisk if nil (tests fill it)
	// Waits between tries of a write-out that failed; retryMin and retryMax if 0.
	retryMin, retryMax time.Duration
}

// Stored describes an instance written to Dir/incoming.
type Stored struct {
	Path           string
	SOPClass       string
	SOPInstance    string
	TransferSyntax string
	CallingAE      string
	Size           int64 // of the file
}

// Server is a listening SCP.
type Server struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener
	// spool holds instances received into memory until writer puts them in Dir/incoming;
	// see spool.go.
	spool  *spool
	writer *writer

	news         chan struct{} // for watchState
	stopState    chan struct{}
	stateDone    chan struct{}
	stateMu      sync.Mutex
	lowSpace     bool  // below MinFree at the last look
	stateKey     State // the last written, as compared for news
	stateWritten bool

	mu       sync.Mutex
	conns    map[*association]struct{}
	nAssoc   int // accepted associations
	closed   bool
	serving  bool // Serve closes the spool when it returns; else Close does
	draining bool
	wg       sync.WaitGroup
}

// Listen validates cfg, creates Dir/incoming and Dir/tmp (removing partial instances left in
// tmp by an earlier process) and starts listening.
func Listen(cfg Config) (*Server, error) {
	if cfg.AETitle == "" || len(cfg.AETitle) > 16 {
		return nil, fmt.Errorf("scp: AE title %q must be 1 to 16 characters", cfg.AETitle)
	}
	if cfg.Dir == "" {
		return nil, errors.New("scp: no Dir")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxPDU == 0 {
		cfg.MaxPDU = DefaultMaxPDU
	}
	if cfg.MaxPDU < 4096 {
		return nil, fmt.Errorf("scp: MaxPDU %d below 4096", cfg.MaxPDU)
	}
	if cfg.MaxAssociations <= 0 {
		cfg.MaxAssociations = DefaultMaxAssociations
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.memLimit <= 0 {
		cfg.memLimit = memLimit
	}
	for _, d := range []string{incomingDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("scp: %w", err)
		}
	}
	if err := removeStaleParts(cfg.Dir); err != nil {
		return nil, fmt.Errorf("scp: %w", err)
	}
	if cfg.segSize <= 0 {
		cfg.segSize = segmentSize
	}
	// A record (header, UID, instance) must fit in a segment.
	cfg.memLimit = int(min(int64(cfg.memLimit), cfg.segSize-segHeaderSize-recHeaderSize-64))
	if cfg.disk == nil {
		cfg.disk = osDisk{}
	}
	if cfg.retryMin <= 0 {
		cfg.retryMin = retryMin
	}
	if cfg.retryMax <= 0 {
		cfg.retryMax = retryMax
	}
	// A full disk does not stop the start: the spool's backlog goes out as space allows, and
	// its free segments, if any, receive meanwhile.
	sp, backlog, err := openSpool(cfg.Dir, cfg.Logger, cfg.segSize, cfg.disk)
	if err != nil {
		return nil, fmt.Errorf("scp: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("scp: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ln: ln, spool: sp, conns: map[*association]struct{}{},
		news: make(chan struct{}, 1), stopState: make(chan struct{}), stateDone: make(chan struct{})}
	sp.mu.Lock()
	sp.changed = s.tell
	sp.mu.Unlock()
	s.writer = newWriter(sp, backlog, cfg.Logger, cfg.OnStored, s.tell, cfg.retryMin, cfg.retryMax)
	s.recordState(true)
	go s.watchState(s.stopState, s.stateDone)
	return s, nil
}

// shutdown writes out what is queued (unless write-outs fail), closes the spool and records the
// last state.
func (s *Server) shutdown() {
	s.writer.close()
	s.spool.close()
	close(s.stopState)
	<-s.stateDone
	s.recordState(false)
}

// Addr is the address listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts associations until ctx ends or Close is called. When ctx ends, idle
// associations are aborted and those in the middle of a message finish it first; Serve returns
// once all have ended.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	s.serving = true
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.draining = true
		for a := range s.conns {
			a.drain()
		}
		s.mu.Unlock()
		s.ln.Close()
	})
	defer stop()
	var err error
	for delay := time.Duration(0); ; {
		conn, aerr := s.ln.Accept()
		if aerr != nil {
			if errors.Is(aerr, syscall.EMFILE) || errors.Is(aerr, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("scp accept", "err", aerr, "retry", delay)
				time.Sleep(delay)
				continue
			}
			if ctx.Err() == nil {
				s.mu.Lock()
				if s.closed {
					err = ErrClosed
				} else {
					err = fmt.Errorf("scp: %w", aerr)
				}
				s.mu.Unlock()
			}
			break
		}
		delay = 0
		s.start(conn)
	}
	s.wg.Wait()
	s.shutdown()
	return err
}

func (s *Server) start(conn net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Connections over the limit still get an A-ASSOCIATE-RJ, but no more than as many again.
	if s.closed || s.draining || len(s.conns) >= 2*s.cfg.MaxAssociations {
		conn.Close()
		return
	}
	a := newAssociation(s, conn)
	s.conns[a] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		a.run()
		s.mu.Lock()
		delete(s.conns, a)
		if a.counted {
			s.nAssoc--
		}
		s.mu.Unlock()
	}()
}

// admit counts a in the accepted associations if there is room.
func (s *Server) admit(a *association) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nAssoc >= s.cfg.MaxAssociations {
		return false
	}
	s.nAssoc++
	a.counted = true
	return true
}

// Close stops listening and drops every connection at once; partial instances are discarded.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for a := range s.conns {
		a.conn.Close()
	}
	serving := s.serving
	s.mu.Unlock()
	if !serving {
		s.shutdown()
	}
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// acceptsAbstractSyntax reports whether uid is Verification, a storage SOP class or configured.
func (s *Server) acceptsAbstractSyntax(uid string) bool {
	if uid == verification || strings.HasPrefix(uid, storagePrefix) && validUID(uid) {
		return true
	}
	for _, c := range s.cfg.SOPClasses {
		if c == uid {
			return true
		}
	}
	return false
}

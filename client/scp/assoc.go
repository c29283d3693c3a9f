package scp

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// Error Comments (LO, up to 64 characters) of the out-of-resources refusals: the modality keeps
// the instance and may send it again later.
const (
	commentCannotWrite = "cannot write"
	commentDiskFull    = "disk full: no room to store, send again later"
	commentEarlierCopy = "an earlier copy waits to be written out, send again later"
)

// association is one TCP connection from a modality, from A-ASSOCIATE-RQ to release or abort.
type association struct {
	s       *Server
	conn    net.Conn
	r       *bufio.Reader
	log     *slog.Logger
	counted bool // holds one of Server.nAssoc; guarded by Server.mu

	draining   atomic.Bool
	atBoundary bool // no message or PDU partly read: a drain may abort here
	extended   bool // the drain's deadline was pushed back once for a message in progress

	callingAE string
	peerMax   uint32
	contexts  [256]*presentationContext // accepted ones by ID

	command    []byte // command set fragments so far
	commandCtx byte
	pending    *pendingStore // a C-STORE-RQ waiting for its data set
}

// pendingStore is a C-STORE whose data set is arriving; in is nil when the data set is
// being dropped because status is already a failure.
type pendingStore struct {
	rq      command
	ctx     byte
	in      *instanceFile
	status  uint16
	comment string
}

func newAssociation(s *Server, conn net.Conn) *association {
	return &association{s: s, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), log: s.log.With("peer", conn.RemoteAddr().String())}
}

// drain asks the association to end at the next message boundary, waking a blocked read.
func (a *association) drain() {
	a.draining.Store(true)
	a.conn.SetReadDeadline(time.Now())
}

// Read reads from the connection for readPDU. A read woken by drain in the middle of a message
// or PDU is resumed once with a fresh idle deadline so the message can complete.
func (a *association) Read(p []byte) (int, error) {
	for {
		n, err := a.r.Read(p)
		if n > 0 {
			a.atBoundary = false
		}
		if err != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && a.draining.Load() && !a.atBoundary && !a.extended {
			a.extended = true
			a.conn.SetReadDeadline(time.Now().Add(a.s.cfg.IdleTimeout))
			continue
		}
		return n, err
	}
}

func (a *association) send(b []byte) error {
	a.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := a.conn.Write(b)
	return err
}

func (a *association) run() {
	defer a.conn.Close()
	defer a.dropPending()

	a.atBoundary = true
	a.conn.SetReadDeadline(time.Now().Add(artimTimeout))
	if a.draining.Load() { // drain ran before the deadline above replaced its own
		return
	}
	typ, body, buf, err := readPDU(a, nil, max(a.s.cfg.MaxPDU, minRQLimit))
	var pe *ProtocolError
	if err != nil && !errors.As(err, &pe) {
		a.log.Debug("scp connection closed before A-ASSOCIATE-RQ", "err", err) // ARTIM expiry included
		return
	}
	if err != nil {
		a.fail(err)
		return
	}
	if typ != pduAssociateRQ {
		a.fail(protoErr(abortUnexpectedPDU, "PDU type 0x%02x before A-ASSOCIATE-RQ", typ))
		return
	}
	rq, err := parseAssociateRQ(body)
	if err != nil {
		a.fail(err)
		return
	}
	if !a.associate(rq) {
		return
	}
	for {
		a.atBoundary = a.pending == nil && len(a.command) == 0
		a.conn.SetReadDeadline(time.Now().Add(a.s.cfg.IdleTimeout))
		if a.atBoundary && a.draining.Load() {
			a.log.Info("scp association aborted: shutting down")
			a.send(abortPDU(0))
			return
		}
		typ, body, buf, err = readPDU(a, buf, a.s.cfg.MaxPDU)
		if err != nil {
			a.fail(err)
			return
		}
		switch typ {
		case pduPData:
			err = forPDVs(body, a.handlePDV)
		case pduReleaseRQ:
			if a.pending != nil || len(a.command) > 0 {
				a.log.Warn("scp release with a message incomplete")
			}
			a.send(releaseRP())
			a.log.Debug("scp association released")
			return
		case pduAbort:
			a.log.Info("scp association aborted by peer")
			return
		default:
			err = protoErr(abortUnexpectedPDU, "unexpected PDU type 0x%02x", typ)
		}
		if err != nil {
			a.fail(err)
			return
		}
	}
}

// fail ends the association after err: A-ABORT for protocol errors and timeouts, nothing to
// send when the connection is gone.
func (a *association) fail(err error) {
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe):
		a.log.Warn("scp association aborted", "err", err)
		a.send(abortPDU(pe.Reason))
	case errors.Is(err, os.ErrDeadlineExceeded):
		a.log.Warn("scp association timed out")
		a.send(abortPDU(0))
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		a.log.Debug("scp connection closed", "err", err)
	default:
		a.log.Warn("scp connection", "err", err)
	}
}

// associate negotiates rq and answers with A-ASSOCIATE-AC or -RJ.
func (a *association) associate(rq *associateRQ) bool {
	cfg := &a.s.cfg
	reject := func(r rejection, why string) bool {
		// At Warn, the station's default level: a modality refused for its AE titles is the
		// first thing a technician setting it up needs to see.
		a.log.Warn("scp association rejected", "why", why, "called", rq.CalledAE, "calling", rq.CallingAE)
		a.send(associateRJ(r))
		return false
	}
	switch {
	case rq.ProtocolVersion&1 == 0:
		return reject(rejectProtocol, "protocol version")
	case rq.ApplicationContext != applicationContextDICOM:
		return reject(rejectAppContext, "application context "+rq.ApplicationContext)
	case rq.CalledAE != cfg.AETitle:
		return reject(rejectCalledAE, "called AE title not recognized")
	case len(cfg.AllowedCallers) > 0 && !slices.Contains(cfg.AllowedCallers, rq.CallingAE):
		return reject(rejectCallingAE, "calling AE title not recognized")
	case !a.s.admit(a):
		return reject(rejectLocalLimit, "local limit exceeded")
	}
	a.callingAE = rq.CallingAE
	a.peerMax = rq.MaxPDU
	accepted := 0
	for i := range rq.Contexts {
		pc := &rq.Contexts[i]
		negotiate(a.s, pc)
		if pc.Result == pcAccepted {
			a.contexts[pc.ID] = pc
			accepted++
		}
	}
	a.log = a.log.With("calling", rq.CallingAE)
	a.log.Debug("scp association accepted", "contexts", len(rq.Contexts), "accepted", accepted,
		"implementation", rq.ImplementationUID, "version", rq.ImplementationName)
	return a.send(associateAC(rq, cfg.MaxPDU)) == nil
}

// negotiate sets pc's result: the first transfer syntax supported in the proposer's order.
func negotiate(s *Server, pc *presentationContext) {
	if !s.acceptsAbstractSyntax(pc.AbstractSyntax) {
		pc.Result = pcAbstractNotSupported
		return
	}
	for _, ts := range pc.TransferSyntax {
		if transferSyntaxes[ts] {
			pc.Result, pc.Accepted = pcAccepted, ts
			return
		}
	}
	pc.Result = pcTransferNotSupported
}

func (a *association) handlePDV(v pdv) error {
	pc := a.contexts[v.Context]
	if pc == nil {
		return protoErr(abortInvalidParamValue, "PDV on presentation context %d, not accepted", v.Context)
	}
	if !v.Command {
		p := a.pending
		if p == nil || p.ctx != v.Context {
			return protoErr(abortUnexpectedPDU, "data set PDV on context %d without its command", v.Context)
		}
		if p.in != nil {
			p.in.write(v.Data)
		}
		if v.Last {
			return a.finishStore()
		}
		return nil
	}
	if a.pending != nil || len(a.command) > 0 && a.commandCtx != v.Context {
		return protoErr(abortUnexpectedPDU, "command PDV on context %d while a message is incomplete", v.Context)
	}
	if len(a.command)+len(v.Data) > maxCommandSet {
		return protoErr(abortInvalidParamValue, "command set over %d bytes", maxCommandSet)
	}
	a.command = append(a.command, v.Data...)
	a.commandCtx = v.Context
	if !v.Last {
		return nil
	}
	rq, err := parseCommand(a.command)
	a.command = a.command[:0]
	if err != nil {
		return err
	}
	return a.handleCommand(pc, rq)
}

func (a *association) handleCommand(pc *presentationContext, rq command) error {
	switch {
	case rq.Field&response != 0 || rq.Field == cCancelRQ:
		return protoErr(abortUnexpectedPDU, "unexpected %v", rq)
	case rq.Field == cEchoRQ && !rq.hasDataSet():
		return a.respond(pc.ID, rq, statusSuccess, "")
	case rq.Field == cStoreRQ && rq.hasDataSet():
		a.pending = a.beginStore(pc, rq)
		return nil
	case rq.hasDataSet():
		a.pending = &pendingStore{rq: rq, ctx: pc.ID, status: statusUnrecognizedOperation}
		return nil
	default:
		return a.respond(pc.ID, rq, statusUnrecognizedOperation, "")
	}
}

func (a *association) beginStore(pc *presentationContext, rq command) *pendingStore {
	p := &pendingStore{rq: rq, ctx: pc.ID}
	if !validUID(rq.SOPInstance) {
		p.status, p.comment = statusCannotUnderstand, "invalid Affected SOP Instance UID"
		return p
	}
	st := Stored{SOPClass: rq.SOPClass, SOPInstance: rq.SOPInstance, TransferSyntax: pc.Accepted, CallingAE: a.callingAE}
	p.in = createInstance(a.s.cfg.disk, a.s.cfg.Dir, st, a.s.writer.buffer(), a.s.cfg.memLimit)
	return p
}

// finishStore commits the instance received and only then answers the C-STORE-RQ. An
// instance received into memory is then durable in the spool, and the writer puts it in
// Dir/incoming; a large one is already there.
func (a *association) finishStore() error {
	p := a.pending
	a.pending = nil
	in := p.in
	var st Stored
	queued := false
	if in != nil && p.status == statusSuccess {
		// Success is only for what can be used: the modality may delete it once told so.
		if p.status, p.comment = in.check(p.rq); p.status != statusSuccess {
			in.discard()
			a.s.writer.release(in.buf)
			in = nil
		}
	}
	if in != nil && in.f != nil && !a.s.writer.flush(p.rq.SOPInstance) {
		// Nothing queued before may land on this instance's name after it; while write-outs
		// fail, an earlier copy waits in the queue.
		in.discard()
		a.s.writer.release(in.buf)
		in = nil
		p.status, p.comment = statusOutOfResources, commentEarlierCopy
	}
	if in != nil {
		var err error
		st, err = in.commit(a.s.spool)
		if err != nil {
			a.log.Error("scp store", "sop_instance", p.rq.SOPInstance, "err", err)
			p.status, p.comment = statusOutOfResources, commentCannotWrite
			if isDiskFull(err) {
				p.comment = commentDiskFull
			}
		}
		if in.rec.seg != nil {
			// Queued even if the response cannot be sent: the instance is durable.
			defer a.s.writer.put(in)
			queued = true
		} else {
			a.s.writer.release(in.buf)
		}
	}
	if err := a.respond(p.ctx, p.rq, p.status, p.comment); err != nil {
		return err
	}
	if in != nil && !queued && p.status == statusSuccess {
		a.log.Debug("scp stored", "sop_instance", st.SOPInstance, "bytes", st.Size)
		if a.s.cfg.OnStored != nil {
			a.s.cfg.OnStored(st)
		}
	}
	return nil
}

func (a *association) respond(ctx byte, rq command, status uint16, comment string) error {
	if status != statusSuccess {
		a.log.Warn("scp failure response", "command", rq.String(), "status", status, "comment", comment)
	}
	return a.send(appendPData(nil, ctx, true, responseTo(rq, status, comment), a.peerMax))
}

// dropPending removes a partly received instance when the association ends.
func (a *association) dropPending() {
	if a.pending != nil && a.pending.in != nil {
		a.pending.in.discard()
		a.s.writer.release(a.pending.in.buf)
	}
	a.pending = nil
}

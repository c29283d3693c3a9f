package scp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDU types, PS3.8 section 9.3.1.
const (
	pduAssociateRQ = 0x01
	pduAssociateAC = 0x02
	pduAssociateRJ = 0x03
	pduPData       = 0x04
	pduReleaseRQ   = 0x05
	pduReleaseRP   = 0x06
	pduAbort       = 0x07
)

// Item types inside A-ASSOCIATE-RQ/AC, PS3.8 sections 9.3.2 and 9.3.3.
const (
	itemApplicationContext = 0x10
	itemPresentationRQ     = 0x20
	itemPresentationAC     = 0x21
	itemAbstractSyntax     = 0x30
	itemTransferSyntax     = 0x40
	itemUserInformation    = 0x50
	itemMaxLength          = 0x51
	itemImplementationUID  = 0x52
	itemImplementationName = 0x55
)

// Presentation context results, PS3.8 table 9-18.
const (
	pcAccepted              = 0
	pcAbstractNotSupported  = 3
	pcTransferNotSupported  = 4
	applicationContextDICOM = "1.2.840.10008.3.1.1.1"
)

// A-ASSOCIATE-RJ result, source and reason, PS3.8 table 9-21.
type rejection struct{ result, source, reason byte }

var (
	rejectCalledAE   = rejection{1, 1, 7}
	rejectCallingAE  = rejection{1, 1, 3}
	rejectAppContext = rejection{1, 1, 2}
	rejectProtocol   = rejection{1, 2, 2}
	rejectLocalLimit = rejection{2, 3, 2}
)

// A-ABORT reasons when the service provider is the source, PS3.8 table 9-26.
const (
	abortUnrecognizedPDU   = 1
	abortUnexpectedPDU     = 2
	abortInvalidParamValue = 6
)

// pduHeaderLen is type, reserved and the 32-bit length.
const pduHeaderLen = 6

// ProtocolError is a violation of PS3.8 or PS3.7 by the peer; the association is aborted.
type ProtocolError struct {
	Reason byte // A-ABORT reason sent to the peer
	Msg    string
}

func (e *ProtocolError) Error() string { return "dicom protocol error: " + e.Msg }

func protoErr(reason byte, format string, a ...any) error {
	return &ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, a...)}
}

// readPDU reads one PDU into buf (grown as needed) and returns its type and variable field.
// A PDU whose length exceeds limit is a protocol error, read no further.
func readPDU(r io.Reader, buf []byte, limit uint32) (typ byte, body, grown []byte, err error) {
	var hdr [pduHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, buf, err
	}
	typ = hdr[0]
	if typ < pduAssociateRQ || typ > pduAbort {
		return typ, nil, buf, protoErr(abortUnrecognizedPDU, "unknown PDU type 0x%02x", typ)
	}
	n := binary.BigEndian.Uint32(hdr[2:])
	if n > limit {
		return typ, nil, buf, protoErr(abortInvalidParamValue, "PDU type 0x%02x length %d exceeds %d", typ, n, limit)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	body = buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return typ, nil, buf, err
	}
	return typ, body, buf, nil
}

func appendPDUHeader(b []byte, typ byte, n int) []byte {
	b = append(b, typ, 0)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// presentationContext is one proposed context and, after negotiation, its result.
type presentationContext struct {
	ID             byte
	AbstractSyntax string
	TransferSyntax []string // proposed, in the proposer's order
	Result         byte
	Accepted       string // chosen transfer syntax when Result is pcAccepted
}

type associateRQ struct {
	ProtocolVersion    uint16
	CalledAE           string
	CallingAE          string
	ApplicationContext string
	Contexts           []presentationContext
	MaxPDU             uint32 // 0: no limit
	ImplementationUID  string
	ImplementationName string
}

var errShortItem = errors.New("truncated item")

// forItems calls fn for each item (type, reserved, 16-bit length, value) in b.
func forItems(b []byte, fn func(typ byte, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errShortItem
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return errShortItem
		}
		if err := fn(b[0], b[4:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

// trimUID drops the NUL or space padding of a UID value.
func trimUID(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// trimAE drops the spaces around an AE title; both ends are insignificant (PS3.5 table 6.2-1).
func trimAE(b []byte) string { return strings.Trim(string(b), " \x00") }

// parseAssociateRQ parses the variable field of an A-ASSOCIATE-RQ, PS3.8 section 9.3.2.
func parseAssociateRQ(b []byte) (*associateRQ, error) {
	if len(b) < 68 {
		return nil, protoErr(abortInvalidParamValue, "A-ASSOCIATE-RQ of %d bytes", len(b))
	}
	rq := &associateRQ{
		ProtocolVersion: binary.BigEndian.Uint16(b),
		CalledAE:        trimAE(b[4:20]),
		CallingAE:       trimAE(b[20:36]),
	}
	err := forItems(b[68:], func(typ byte, v []byte) error {
		switch typ {
		case itemApplicationContext:
			rq.ApplicationContext = trimUID(v)
		case itemPresentationRQ:
			if len(v) < 4 {
				return errShortItem
			}
			pc := presentationContext{ID: v[0]}
			err := forItems(v[4:], func(typ byte, v []byte) error {
				switch typ {
				case itemAbstractSyntax:
					pc.AbstractSyntax = trimUID(v)
				case itemTransferSyntax:
					pc.TransferSyntax = append(pc.TransferSyntax, trimUID(v))
				}
				return nil
			})
			if err != nil {
				return err
			}
			rq.Contexts = append(rq.Contexts, pc)
		case itemUserInformation:
			return forItems(v, func(typ byte, v []byte) error {
				switch typ {
				case itemMaxLength:
					if len(v) != 4 {
						return errShortItem
					}
					rq.MaxPDU = binary.BigEndian.Uint32(v)
				case itemImplementationUID:
					rq.ImplementationUID = trimUID(v)
				case itemImplementationName:
					rq.ImplementationName = strings.TrimRight(string(v), " ")
				}
				return nil // other sub-items (roles, async ops, identity) are not used
			})
		}
		return nil
	})
	if err != nil {
		return nil, protoErr(abortInvalidParamValue, "A-ASSOCIATE-RQ: %v", err)
	}
	return rq, nil
}

func appendItem(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendUIDItem(b []byte, typ byte, uid string) []byte { return appendItem(b, typ, []byte(uid)) }

func appendAE(b []byte, ae string) []byte {
	return append(b, fmt.Sprintf("%-16.16s", ae)...)
}

// associateAC builds an A-ASSOCIATE-AC PDU answering rq, PS3.8 section 9.3.3.
func associateAC(rq *associateRQ, maxPDU uint32) []byte {
	var v []byte
	v = binary.BigEndian.AppendUint16(v, 1)
	v = append(v, 0, 0)
	v = appendAE(v, rq.CalledAE)
	v = appendAE(v, rq.CallingAE)
	v = append(v, make([]byte, 32)...)
	v = appendUIDItem(v, itemApplicationContext, applicationContextDICOM)
	for _, pc := range rq.Contexts {
		ts := pc.Accepted
		if pc.Result != pcAccepted {
			ts = tsImplicitLE // not significant, but the sub-item must be there
		}
		sub := []byte{pc.ID, 0, pc.Result, 0}
		sub = appendUIDItem(sub, itemTransferSyntax, ts)
		v = appendItem(v, itemPresentationAC, sub)
	}
	var ui []byte
	ui = appendItem(ui, itemMaxLength, binary.BigEndian.AppendUint32(nil, maxPDU))
	ui = appendUIDItem(ui, itemImplementationUID, ImplementationClassUID)
	ui = appendItem(ui, itemImplementationName, []byte(ImplementationVersionName))
	v = appendItem(v, itemUserInformation, ui)
	return append(appendPDUHeader(nil, pduAssociateAC, len(v)), v...)
}

func associateRJ(r rejection) []byte {
	return append(appendPDUHeader(nil, pduAssociateRJ, 4), 0, r.result, r.source, r.reason)
}

// abortPDU is an A-ABORT from the service provider (source 2) with the given reason.
func abortPDU(reason byte) []byte {
	return append(appendPDUHeader(nil, pduAbort, 4), 0, 0, 2, reason)
}

func releaseRP() []byte { return append(appendPDUHeader(nil, pduReleaseRP, 4), 0, 0, 0, 0) }

// pdv is one presentation data value item of a P-DATA-TF, PS3.8 section 9.3.5.1 and annex E.
type pdv struct {
	Context byte
	Command bool // else data set
	Last    bool
	Data    []byte
}

// forPDVs calls fn for each PDV in the variable field of a P-DATA-TF.
func forPDVs(b []byte, fn func(pdv) error) error {
	if len(b) == 0 {
		return protoErr(abortInvalidParamValue, "P-DATA-TF without PDV")
	}
	for len(b) > 0 {
		if len(b) < 6 {
			return protoErr(abortInvalidParamValue, "truncated PDV header")
		}
		n := binary.BigEndian.Uint32(b)
		if n < 2 || uint64(n) > uint64(len(b)-4) {
			return protoErr(abortInvalidParamValue, "PDV length %d with %d bytes left", n, len(b)-4)
		}
		mch := b[5]
		if mch&^3 != 0 {
			return protoErr(abortInvalidParamValue, "message control header 0x%02x", mch)
		}
		if err := fn(pdv{Context: b[4], Command: mch&1 != 0, Last: mch&2 != 0, Data: b[6 : 4+n]}); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

// appendPData appends P-DATA-TF PDUs carrying msg on context id, fragmented so that no PDU's
// variable field exceeds peerMax (0: no limit).
func appendPData(b []byte, id byte, command bool, msg []byte, peerMax uint32) []byte {
	frag := len(msg)
	if peerMax > 6 && uint64(frag) > uint64(peerMax-6) {
		frag = int(peerMax - 6)
	}
	for first := true; first || len(msg) > 0; first = false {
		n := min(frag, len(msg))
		var mch byte
		if command {
			mch |= 1
		}
		if n == len(msg) {
			mch |= 2
		}
		b = appendPDUHeader(b, pduPData, 6+n)
		b = binary.BigEndian.AppendUint32(b, uint32(2+n))
		b = append(b, id, mch)
		b = append(b, msg[:n]...)
		msg = msg[n:]
	}
	return b
}

package ldap

import (
	"io"
	"math"
)

// The small BER subset LDAP uses (RFC 4511 section 5.1): low tag numbers,
// definite lengths only, primitive strings. Decoding works on byte slices
// without allocating; encoding of our own answers uses asn1-ber (encode.go).

// Identifier octets used here.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagEnumerated  = 0x0a
	tagSequence    = 0x30

	classMask       = 0xc0
	classApp        = 0x40
	constructedBit  = 0x20
	tagNumberMask   = 0x1f
	highTagNumber   = 0x1f
	appConstructed  = classApp | constructedBit
	ctxPrimitive0   = 0x80 // [0] primitive: simple password, requestName
	ctxConstructed3 = 0xa3 // [3] constructed: SaslCredentials
)

// Application tag numbers of protocolOp (RFC 4511 section 4.2 ff) that the
// package uses.
const (
	appBindRequest      = 0
	appBindResponse     = 1
	appSearchRequest    = 3
	appSearchDone       = 5
	appModifyRequest    = 6
	appModifyResponse   = 7
	appAddRequest       = 8
	appAddResponse      = 9
	appDelRequest       = 10
	appDelResponse      = 11
	appModDNRequest     = 12
	appModDNResponse    = 13
	appCompareRequest   = 14
	appCompareResponse  = 15
	appExtendedRequest  = 23
	appExtendedResponse = 24
)

// maxLength bounds any decoded length so arithmetic on it cannot overflow.
const maxLength = math.MaxInt32

// element is one decoded TLV; content aliases the input.
type element struct {
	tag     byte
	content []byte
}

// next decodes the element at the start of b and returns it with the bytes
// that follow it.
func next(b []byte, place string) (element, []byte, error) {
	if len(b) < 2 {
		return element{}, nil, decodeErr(place, ErrTruncated)
	}
	tag := b[0]
	if tag&tagNumberMask == highTagNumber {
		return element{}, nil, decodeErr(place, errHighTag)
	}
	n, hl, err := lengthOf(b[1:])
	if err != nil {
		return element{}, nil, decodeErr(place, err)
	}
	b = b[1+hl:]
	if n > len(b) {
		return element{}, nil, decodeErr(place, ErrTruncated)
	}
	return element{tag: tag, content: b[:n]}, b[n:], nil
}

// expect decodes the next element and checks its identifier octet.
func expect(b []byte, tag byte, place string) (element, []byte, error) {
	e, rest, err := next(b, place)
	if err != nil {
		return e, rest, err
	}
	if e.tag != tag {
		return e, rest, decodeErr(place, tagError{got: e.tag, want: tag})
	}
	return e, rest, nil
}

// malformedError is a specific decoding problem that matches ErrMalformed.
type malformedError string

func (e malformedError) Error() string { return string(e) }
func (e malformedError) Unwrap() error { return ErrMalformed }

const (
	errHighTag      = malformedError("high tag numbers are not used by LDAP")
	errBadLength    = malformedError("invalid length octet 0xff")
	errEmptyInteger = malformedError("empty integer")
	errBigInteger   = malformedError("integer out of range")
)

// lengthOf decodes the length octets at the start of b and returns the
// length and how many octets encoded it.
func lengthOf(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	first := b[0]
	switch {
	case first < 0x80:
		return int(first), 1, nil
	case first == 0x80:
		return 0, 0, ErrIndefiniteLength
	case first == 0xff:
		return 0, 0, errBadLength
	}
	k := int(first & 0x7f)
	if len(b) < 1+k {
		return 0, 0, ErrTruncated
	}
	n, err = longLength(b[1 : 1+k])
	return n, 1 + k, err
}

// longLength decodes the octets of a long-form length. Leading zero octets
// are allowed (Windows clients send 0x84 00 00 01 23).
func longLength(b []byte) (int, error) {
	var v uint64
	for _, c := range b {
		if v > maxLength {
			return 0, ErrTooLarge
		}
		v = v<<8 | uint64(c)
	}
	if v > maxLength {
		return 0, ErrTooLarge
	}
	return int(v), nil
}

// readHeader reads one identifier octet and its length octets from r,
// appending the raw octets to hdr. At a clean end of input before the
// identifier it returns io.EOF; inside the header io.ErrUnexpectedEOF.
func readHeader(r io.ByteReader, hdr []byte) (tag byte, n int, out []byte, err error) {
	tag, err = r.ReadByte()
	if err != nil {
		return 0, 0, hdr, err
	}
	hdr = append(hdr, tag)
	if tag&tagNumberMask == highTagNumber {
		return tag, 0, hdr, errHighTag
	}
	first, err := r.ReadByte()
	if err != nil {
		return tag, 0, hdr, noEOF(err)
	}
	hdr = append(hdr, first)
	switch {
	case first < 0x80:
		return tag, int(first), hdr, nil
	case first == 0x80:
		return tag, 0, hdr, ErrIndefiniteLength
	case first == 0xff:
		return tag, 0, hdr, errBadLength
	}
	k := int(first & 0x7f)
	start := len(hdr)
	for range k {
		c, err := r.ReadByte()
		if err != nil {
			return tag, 0, hdr, noEOF(err)
		}
		hdr = append(hdr, c)
	}
	n, err = longLength(hdr[start:])
	return tag, n, hdr, err
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: the stream ended inside a
// message.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseInt decodes a two's complement INTEGER or ENUMERATED of at most 8
// octets.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, errEmptyInteger
	}
	if len(b) > 8 {
		return 0, errBigInteger
	}
	v := int64(int8(b[0])) // sign extension
	for _, c := range b[1:] {
		v = v<<8 | int64(c)
	}
	return v, nil
}

// parseMessageID decodes the messageID at the start of an LDAPMessage's
// content and returns the bytes after it.
func parseMessageID(b []byte) (int64, []byte, error) {
	e, rest, err := expect(b, tagInteger, "messageID")
	if err != nil {
		return 0, nil, err
	}
	id, err := parseInt(e.content)
	if err != nil {
		return 0, nil, decodeErr("messageID", err)
	}
	if id < 0 || id > math.MaxInt32 {
		return 0, nil, decodeErr("messageID", errBigInteger)
	}
	return id, rest, nil
}

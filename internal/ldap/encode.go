package ldap

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// LDAP result codes the proxy sends or interprets (RFC 4511 appendix A).
const (
	resultSuccess                = 0
	resultProtocolError          = 2
	resultAuthMethodNotSupported = 7
	resultSASLBindInProgress     = 14
	resultInappropriateAuth      = 48
	resultInvalidCredentials     = 49
	resultUnavailable            = 52
)

// responseTag maps a request's application tag to the tag of its response,
// or -1 for requests that have none (Unbind, Abandon).
func responseTag(req uint8) int {
	switch req {
	case appBindRequest:
		return appBindResponse
	case appSearchRequest:
		return appSearchDone
	case appModifyRequest, appAddRequest, appDelRequest, appModDNRequest, appCompareRequest:
		return int(req) + 1
	case appExtendedRequest:
		return appExtendedResponse
	}
	return -1
}

// encodeResult builds an LDAPMessage carrying a response with an LDAPResult.
// responseName is added for ExtendedResponses when not empty.
func encodeResult(id int64, app int, code int, diag, responseName string) []byte {
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ber.Tag(app), nil, "protocolOp")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	if responseName != "" && app == appExtendedResponse {
		op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, responseName, "responseName"))
	}
	msg.AppendChild(op)
	return msg.Bytes()
}

// encodeNotice builds a Notice of Disconnection (RFC 4511 section 4.4.1),
// the unsolicited message a server sends before closing on an error.
func encodeNotice(code int, diag string) []byte {
	return encodeResult(0, appExtendedResponse, code, diag, noticeOfDisconnectionOID)
}

// encodeAnswer answers request tag req with message id: the matching
// response type, or a Notice of Disconnection for requests without one. For
// an ExtendedRequest the response names StartTLS when startTLS is set.
func encodeAnswer(id int64, req uint8, code int, diag string, startTLS bool) []byte {
	app := responseTag(req)
	if app < 0 {
		return encodeNotice(code, diag)
	}
	name := ""
	if startTLS {
		name = startTLSOID
	}
	return encodeResult(id, app, code, diag, name)
}

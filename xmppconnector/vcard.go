package xmppconnector

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A vCard is the one answer whose size the contact chooses and the
// connector asks for unprompted (every new contact, every announced
// change): its PHOTO is a picture in base64 of any size. Decoded like
// other IQ answers (conn.request), the whole element was copied token by
// token, then decoded into a struct, then stripped of whitespace and
// decoded from base64, only to be refused as over maxPhotoBytes at the end:
// a 24 MiB photo cost some 290 MiB. So the vCard answer is read here, token
// by token straight off the stream (which xmlsplit.go cuts into pieces),
// keeping only the few fields the connector uses, each up to a bound: the
// photo's text is kept up to the limit's base64 length, and once past it
// dropped and the rest read past.

// maxVCardTextBytes bounds each of FN, NICKNAME and TYPE: nobody's name is
// longer, and what is past it is dropped while it is read.
const maxVCardTextBytes = 4096

type vCardGetIQ struct {
	iqOut
	VCard struct {
		XMLName xml.Name `xml:"vcard-temp vCard"`
	}
}

// vCard is the part of a vcard-temp (XEP-0054) the connector reads.
type vCard struct {
	FN       string
	Nickname string
	Photo    struct {
		Type string
		// BinVal is the photo's base64 text without its whitespace
		// (line folding), nil if over the limit (TooLarge).
		BinVal   []byte
		TooLarge bool
	}
}

// maxPhotoBytes bounds a vCard photo: the bridge refuses avatars over
// 10 MiB (puppet's maxAvatarBytes), so a larger one would only be decoded,
// stored and served for nothing, at a size the contact chooses.
const maxPhotoBytes = 10 << 20

var errPhotoTooLarge = errors.New("vCard photo over the avatar limit")

// maxPhotoBase64 is the base64 length of a photo of maxPhotoBytes.
var maxPhotoBase64 = base64.StdEncoding.EncodedLen(maxPhotoBytes)

// photoBytes decodes the whitespace-free base64 text of a vCard photo.
func photoBytes(b64 []byte) ([]byte, error) {
	if len(b64) > maxPhotoBase64 {
		return nil, errPhotoTooLarge
	}
	data := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Decode(data, b64)
	if err != nil {
		return nil, fmt.Errorf("decoding vCard photo: %w", err)
	}
	if n > maxPhotoBytes {
		return nil, errPhotoTooLarge
	}
	return data[:n], nil
}

// vCardField is where the text of the element being read goes.
type vCardField int

const (
	fieldNone vCardField = iota
	fieldFN
	fieldNickname
	fieldType
	fieldBinVal
)

// readVCard reads a vCard element whose start was just read from d, up to
// and including its end. Only the first FN, NICKNAME and PHOTO count, as
// direct children (TYPE and BINVAL of PHOTO), matched by local name as the
// struct decoding did.
func readVCard(d xml.TokenReader) (*vCard, error) {
	vc := &vCard{}
	var fn, nick, typ, binval []byte
	var gotFN, gotNick, gotType, gotBinVal, inPhoto bool
	photos := 0
	depth := 0 // of the element being read, below the vCard
	field := fieldNone
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("reading vCard: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			field = fieldNone
			switch name := t.Name.Local; {
			case depth == 1 && name == "FN" && !gotFN:
				field, gotFN = fieldFN, true
			case depth == 1 && name == "NICKNAME" && !gotNick:
				field, gotNick = fieldNickname, true
			case depth == 1 && name == "PHOTO":
				photos++
				inPhoto = photos == 1
			case depth == 2 && inPhoto && name == "TYPE" && !gotType:
				field, gotType = fieldType, true
			case depth == 2 && inPhoto && name == "BINVAL" && !gotBinVal:
				field, gotBinVal = fieldBinVal, true
			}
		case xml.EndElement:
			if depth == 0 {
				// A cut may have split the last character.
				vc.FN, vc.Nickname = strings.ToValidUTF8(string(fn), ""), strings.ToValidUTF8(string(nick), "")
				vc.Photo.Type = strings.ToValidUTF8(string(typ), "")
				if !vc.Photo.TooLarge {
					vc.Photo.BinVal = binval
				}
				return vc, nil
			}
			if depth == 1 {
				inPhoto = false
			}
			depth--
			field = fieldNone
		case xml.CharData:
			switch field {
			case fieldFN:
				fn = appendBounded(fn, t, maxVCardTextBytes)
			case fieldNickname:
				nick = appendBounded(nick, t, maxVCardTextBytes)
			case fieldType:
				typ = appendBounded(typ, t, maxVCardTextBytes)
			case fieldBinVal:
				if vc.Photo.TooLarge {
					continue
				}
				var ok bool
				if binval, ok = appendBase64(binval, t); !ok {
					// The rest is read past, not kept.
					vc.Photo.TooLarge, binval = true, nil
				}
			}
		}
	}
}

// appendBounded appends text to b, keeping at most n bytes in all.
func appendBounded(b, text []byte, n int) []byte {
	return append(b, text[:min(len(text), max(0, n-len(b)))]...)
}

// appendBase64 appends text to b without XML whitespace: BINVAL is often
// folded into lines (RFC 2045), which base64 decoding does not skip. Text
// that would take b past maxPhotoBase64 is not appended (ok false): it is
// counted first, so an oversized photo costs no copy at all.
func appendBase64(b, text []byte) (_ []byte, ok bool) {
	n := 0
	for _, c := range text {
		if !isXMLSpace(c) {
			n++
		}
	}
	if len(b)+n > maxPhotoBase64 {
		return b, false
	}
	if cap(b)-len(b) < n {
		// Doubling, up to the limit: the text comes in pieces (xmlsplit.go)
		// and append's growth for large slices (a quarter) reallocated
		// the photo some twenty times on its way to the limit.
		grown := make([]byte, len(b), min(max(2*cap(b), len(b)+n), maxPhotoBase64))
		copy(grown, b)
		b = grown
	}
	for _, c := range text {
		if !isXMLSpace(c) {
			b = append(b, c)
		}
	}
	return b, true
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// fetchVCard asks who's server for who's vCard and reads the answer as it
// arrives (see above). An account without a vCard is answered with an
// error, which comes back as *iqError.
func (c *xmppConn) fetchVCard(ctx context.Context, who string) (*vCard, error) {
	var card *vCard
	err := c.readAnswer(ctx, vCardGetIQ{iqOut: newRequest("get", who)}, func(d *xml.Decoder) error {
		for {
			tok, err := d.Token()
			if err != nil {
				return fmt.Errorf("reading vCard answer: %w", err)
			}
			switch t := tok.(type) {
			case xml.StartElement:
				if t.Name.Space == nsVCard && t.Name.Local == "vCard" {
					card, err = readVCard(d)
					return err
				}
				if err := d.Skip(); err != nil {
					return fmt.Errorf("reading vCard answer: %w", err)
				}
			case xml.EndElement:
				// A result without a vCard: a contact with no profile.
				card = &vCard{}
				return nil
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return card, nil
}

package xmppconnector

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strings"
)

// capsNode names this software in entity capabilities (XEP-0115).
const capsNode = "https://github.com/dmbridge/dmbridge"

// capabilities is what the connector tells the server it supports. The
// +notify features matter most: they are how a client asks the server to
// push contacts' profile changes (nickname, vCard4, avatar) via PEP.
type capabilities struct {
	features []string
	ver      string
}

func newCapabilities() capabilities {
	f := []string{
		nsDiscoInfo, nsCaps, nsChatStates, nsMarkers, nsCarbons, nsCorrect,
		nsRetract, nsReactions, nsReply, nsSID, nsPing, nsOOB,
		nsNick + "+notify", nsVCard4 + "+notify", nsAvatarMeta + "+notify",
	}
	slices.Sort(f)
	// XEP-0115 §5.1: identities then features, each followed by '<'.
	var s strings.Builder
	s.WriteString("client/bot//dmbridge<")
	for _, x := range f {
		s.WriteString(x + "<")
	}
	sum := sha1.Sum([]byte(s.String()))
	return capabilities{features: f, ver: base64.StdEncoding.EncodeToString(sum[:])}
}

type capsEl struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/caps c"`
	Hash    string   `xml:"hash,attr"`
	Node    string   `xml:"node,attr"`
	Ver     string   `xml:"ver,attr"`
}

func (c capabilities) element() *capsEl {
	return &capsEl{Hash: "sha-1", Node: capsNode, Ver: c.ver}
}

type discoFeature struct {
	Var string `xml:"var,attr"`
}

type discoInfoResult struct {
	iqOut
	Query struct {
		XMLName  xml.Name `xml:"http://jabber.org/protocol/disco#info query"`
		Node     string   `xml:"node,attr,omitempty"`
		Identity struct {
			Category string `xml:"category,attr"`
			Type     string `xml:"type,attr"`
			Name     string `xml:"name,attr"`
		} `xml:"identity"`
		Features []discoFeature `xml:"feature"`
	}
}

func (c capabilities) discoResult(id, to, node string) discoInfoResult {
	r := discoInfoResult{iqOut: emptyResult(id, to)}
	r.Query.Node = node
	r.Query.Identity.Category, r.Query.Identity.Type, r.Query.Identity.Name = "client", "bot", "dmbridge"
	for _, f := range c.features {
		r.Query.Features = append(r.Query.Features, discoFeature{Var: f})
	}
	return r
}

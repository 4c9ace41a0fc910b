package connector

import (
	"net/http"
	"strings"
)

// PictureType is the type of a contact picture as its bytes show it, or
// "" if they are not a picture. The bytes decide, not the type the network
// claims: a vCard may say image/png over an HTML page, and whoever serves
// the picture on (the homeserver's media repository, a connector's avatar
// endpoint) serves it with the type it is given. A picture format the
// sniffer does not know (HEIC, say) keeps a claimed image type; SVG, which
// can carry scripts, sniffs as text and is never a picture here.
func PictureType(data []byte, claimed string) string {
	sniffed := http.DetectContentType(data)
	switch {
	case strings.HasPrefix(sniffed, "image/"):
		return sniffed
	case sniffed == "application/octet-stream" && strings.HasPrefix(claimed, "image/") && !strings.HasPrefix(claimed, "image/svg"):
		return claimed
	}
	return ""
}

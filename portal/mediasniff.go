package portal

import (
	"bytes"
	"encoding/binary"
	"image"
	_ "image/gif" // image.DecodeConfig learns these formats for info.w/h
	_ "image/jpeg"
	_ "image/png"

	// WebP is the usual format of stickers and of many phones' photos;
	// without its decoder such images got no info.w/h.
	_ "golang.org/x/image/webp"

	"github.com/dmbridge/dmbridge/connector"
)

// imageType checks an attachment that claims to be an image against its
// first bytes, as contact pictures are checked (connector.PictureType), and
// returns the mimetype to post it with and whether it is an image at all.
// The claim alone picked m.image and the Content-Type the media repository
// serves the file with, so an HTML page or an SVG (which can carry script)
// claimed as image/png was shown as a broken image and served as one. Such
// a file goes as a plain file, application/octet-stream; an image whose
// bytes say another image type gets that type.
func imageType(claimed string, head []byte) (string, bool) {
	if t := connector.PictureType(head, claimed); t != "" {
		return t, true
	}
	return "application/octet-stream", false
}

// imageSize is an image's width and height as shown: from its header, with
// the two swapped for a JPEG whose EXIF orientation turns it by 90° (5-8),
// as every client and thumbnailer applies it (a portrait phone photo is
// stored as landscape). ok is false when the header is not understood.
func imageSize(head []byte) (w, h int, ok bool) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(head))
	if err != nil {
		return 0, 0, false
	}
	w, h = cfg.Width, cfg.Height
	if format == "jpeg" && jpegOrientation(head) >= 5 {
		w, h = h, w
	}
	return w, h, true
}

// jpegOrientation reads the EXIF orientation (1-8) from a JPEG's APP1
// segment within data, or 0. It looks only at the segments before the
// first frame or scan, at most 64 of them, and never beyond data.
func jpegOrientation(data []byte) int {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return 0
	}
	pos := 2
	for range 64 {
		if pos+4 > len(data) || data[pos] != 0xFF {
			return 0
		}
		marker := data[pos+1]
		if marker == 0xFF { // fill byte
			pos++
			continue
		}
		if marker == 0xDA || (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
			return 0 // scan or frame header: no EXIF before it
		}
		length := int(binary.BigEndian.Uint16(data[pos+2:]))
		if length < 2 || pos+2+length > len(data) {
			return 0
		}
		seg := data[pos+4 : pos+2+length]
		if marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		pos += 2 + length
	}
	return 0
}

// tiffOrientation reads tag 0x0112 (a SHORT) from the first IFD of a TIFF
// structure, or 0.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var order binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 0
	}
	if order.Uint16(t[2:]) != 42 {
		return 0
	}
	ifd := int(order.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0
	}
	count := int(order.Uint16(t[ifd:]))
	for i := range count {
		e := ifd + 2 + 12*i
		if e+12 > len(t) {
			return 0
		}
		if order.Uint16(t[e:]) == 0x0112 && order.Uint16(t[e+2:]) == 3 {
			if v := int(order.Uint16(t[e+8:])); v >= 1 && v <= 8 {
				return v
			}
			return 0
		}
	}
	return 0
}

package xmppclient

// UploadSlot is the slot element of an HTTP File Upload answer (XEP-0363
// §4): where to PUT the file, with the headers the service asks for, and
// the URL it can then be fetched from.
type UploadSlot struct {
	Put struct {
		URL     string `xml:"url,attr"`
		Headers []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"header"`
	} `xml:"put"`
	Get struct {
		URL string `xml:"url,attr"`
	} `xml:"get"`
}

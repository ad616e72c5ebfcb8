package victoriametrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// This file decodes the Prometheus query API's JSON responses. It is on the
// hot path (one response of every host per metric per tick), so it scans the
// body in place instead of building map[string]any: a series costs one pass
// over its bytes and no allocation.

// apiResponse is what a response says besides its series.
type apiResponse struct {
	Status     string
	ErrorType  string
	Error      string
	ResultType string
}

// point is one sample of a result series.
type point struct {
	// T is unix milliseconds.
	T int64
	V float64
}

// seriesFunc receives one result series: the value of the host label
// (hasHost false when the series lacks it), the raw JSON of its label set
// (for error messages) and its points. The slices are only valid during the
// call.
type seriesFunc func(host []byte, hasHost bool, labels []byte, points []point) error

// decoder scans one JSON document.
type decoder struct {
	b      []byte
	i      int
	points []point // reused across series
}

// decodeResponse scans body, calling fn for each series of a vector or
// matrix result.
func decodeResponse(body []byte, hostLabel string, fn seriesFunc) (apiResponse, error) {
	d := &decoder{b: body}
	var resp apiResponse
	err := d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "status":
			resp.Status, err = d.stringValue()
		case "errorType":
			resp.ErrorType, err = d.stringValue()
		case "error":
			resp.Error, err = d.stringValue()
		case "data":
			err = d.data(&resp, hostLabel, fn)
		default:
			err = d.skip()
		}
		return err
	})
	if err != nil {
		return resp, fmt.Errorf("decode response at byte %d: %w", d.i, err)
	}
	return resp, nil
}

func (d *decoder) data(resp *apiResponse, hostLabel string, fn seriesFunc) error {
	if d.peek() == 'n' { // "data": null in some error responses
		return d.skip()
	}
	return d.object(func(key []byte) error {
		switch string(key) {
		case "resultType":
			var err error
			resp.ResultType, err = d.stringValue()
			return err
		case "result":
			return d.result(hostLabel, fn)
		default:
			return d.skip()
		}
	})
}

func (d *decoder) result(hostLabel string, fn seriesFunc) error {
	d.ws()
	if d.peek() == 'n' {
		return d.skip()
	}
	if err := d.expect('['); err != nil {
		return err
	}
	if d.ws(); d.peek() == ']' {
		d.i++
		return nil
	}
	for {
		if d.ws(); d.peek() != '{' {
			return errors.New("result is not a vector or a matrix (scalar or string query?)")
		}
		if err := d.series(hostLabel, fn); err != nil {
			return err
		}
		d.ws()
		switch d.next() {
		case ',':
		case ']':
			return nil
		default:
			return errors.New("expected , or ] in result")
		}
	}
}

func (d *decoder) series(hostLabel string, fn seriesFunc) error {
	var host, labels []byte
	hasHost := false
	d.points = d.points[:0]
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "metric":
			d.ws()
			start := d.i
			err := d.object(func(label []byte) error {
				if string(label) != hostLabel {
					return d.skip()
				}
				v, err := d.str()
				host, hasHost = v, true
				return err
			})
			labels = d.b[start:d.i]
			return err
		case "value":
			return d.point()
		case "values":
			if err := d.expect('['); err != nil {
				return err
			}
			if d.ws(); d.peek() == ']' {
				d.i++
				return nil
			}
			for {
				if err := d.point(); err != nil {
					return err
				}
				d.ws()
				switch d.next() {
				case ',':
				case ']':
					return nil
				default:
					return errors.New("expected , or ] in values")
				}
			}
		default:
			return d.skip()
		}
	})
	if err != nil {
		return err
	}
	return fn(host, hasHost, labels, d.points)
}

// point reads [<unix seconds>, "<value>"].
func (d *decoder) point() error {
	if err := d.expect('['); err != nil {
		return err
	}
	d.ws()
	tsTok := d.number()
	ms, err := parseTimestamp(tsTok)
	if err != nil {
		return err
	}
	if err := d.expect(','); err != nil {
		return err
	}
	d.ws()
	var vTok []byte
	if d.peek() == '"' {
		if vTok, err = d.str(); err != nil {
			return err
		}
	} else {
		vTok = d.number()
	}
	v, err := strconv.ParseFloat(string(vTok), 64)
	if err != nil {
		return fmt.Errorf("value %q: %w", vTok, err)
	}
	if err := d.expect(']'); err != nil {
		return err
	}
	d.points = append(d.points, point{T: ms, V: v})
	return nil
}

// parseTimestamp turns unix seconds, printed with a fraction of up to three
// digits, into milliseconds. Plain integers of up to 15 digits (every
// time until the year 31 million), the common case, skip ParseFloat; a
// time whose milliseconds do not fit an int64 is an error, not a
// wrapped-around one (FuzzDecodeResponse found the overflow).
func parseTimestamp(tok []byte) (int64, error) {
	if len(tok) > 0 && len(tok) <= 15 {
		var n int64
		for _, c := range tok {
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int64(c-'0')
		}
		if n >= 0 {
			return n * 1000, nil
		}
	}
	ts, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", tok, err)
	}
	ms := math.Round(ts * 1000)
	if !(math.Abs(ms) < 1<<63) {
		return 0, fmt.Errorf("timestamp %q: out of range", tok)
	}
	return int64(ms), nil
}

// object reads {"key": value, ...}, calling fn with each key positioned at
// its value; fn must consume the value.
func (d *decoder) object(fn func(key []byte) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	if d.ws(); d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		d.ws()
		key, err := d.str()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		d.ws()
		if err := fn(key); err != nil {
			return err
		}
		d.ws()
		switch d.next() {
		case ',':
		case '}':
			return nil
		default:
			return errors.New("expected , or } in object")
		}
	}
}

// str reads a string and returns its content, unescaped when it holds
// escapes (then the result is a fresh slice).
func (d *decoder) str() ([]byte, error) {
	if err := d.expect('"'); err != nil {
		return nil, err
	}
	start := d.i
	escaped := false
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '\\':
			escaped = true
			d.i += 2
			continue
		case '"':
			s := d.b[start:d.i]
			d.i++
			if !escaped {
				return s, nil
			}
			var u string
			if err := json.Unmarshal(d.b[start-1:d.i], &u); err != nil {
				return nil, err
			}
			return []byte(u), nil
		}
		d.i++
	}
	return nil, errors.New("unterminated string")
}

func (d *decoder) stringValue() (string, error) {
	if d.ws(); d.peek() == 'n' {
		return "", d.skip()
	}
	s, err := d.str()
	return string(s), err
}

// number returns the token of a number (or of a bare literal).
func (d *decoder) number() []byte {
	start := d.i
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E',
			c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			d.i++
		default:
			return d.b[start:d.i]
		}
	}
	return d.b[start:d.i]
}

// skip reads any value.
func (d *decoder) skip() error {
	d.ws()
	switch d.peek() {
	case '"':
		_, err := d.str()
		return err
	case '{', '[':
		depth := 0
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case '"':
				if _, err := d.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					d.i++
					return nil
				}
			}
			d.i++
		}
		return errors.New("unterminated value")
	case 0:
		return errors.New("unexpected end of input")
	default:
		if len(d.number()) == 0 {
			return fmt.Errorf("unexpected %q", d.b[d.i])
		}
		return nil
	}
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) next() byte {
	c := d.peek()
	d.i++
	return c
}

func (d *decoder) expect(c byte) error {
	d.ws()
	if d.peek() != c {
		if d.i >= len(d.b) {
			return fmt.Errorf("unexpected end of input, want %q", c)
		}
		return fmt.Errorf("unexpected %q, want %q", d.b[d.i], c)
	}
	d.i++
	return nil
}

// firstLabels returns the label set of the first series of body whose host
// label is host, for the error about two series of one host.
func firstLabels(body []byte, hostLabel string, host []byte) string {
	var found string
	errFound := errors.New("found")
	_, _ = decodeResponse(body, hostLabel, func(h []byte, hasHost bool, labels []byte, _ []point) error {
		if hasHost && bytes.Equal(h, host) {
			found = compactLabels(labels)
			return errFound
		}
		return nil
	})
	return found
}

// compactLabels returns a label set's raw JSON without insignificant
// whitespace, for error messages.
func compactLabels(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

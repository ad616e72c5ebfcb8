package victoriametrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rollguard/rollguard/ports"
)

// refSeries is one series as the reference decoder reads it.
type refSeries struct {
	host    string
	hasHost bool
	points  []point
}

// refDecode decodes a query API response with encoding/json doing all the
// lexing, walking objects in document order so that repeated keys are
// taken as decodeResponse takes them (each occurrence, in order): the
// reference of the differential fuzz test.
func refDecode(body []byte, hostLabel string) (apiResponse, []refSeries, error) {
	var resp apiResponse
	var out []refSeries
	str := func(raw json.RawMessage) (string, error) {
		if string(raw) == "null" {
			return "", nil
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	pointOf := func(raw json.RawMessage) (point, error) {
		var pair []json.RawMessage
		if err := json.Unmarshal(raw, &pair); err != nil || pair == nil || len(pair) != 2 {
			return point{}, errors.New("not a pair")
		}
		var ts json.Number
		if err := json.Unmarshal(pair[0], &ts); err != nil || len(pair[0]) == 0 || pair[0][0] == '"' {
			return point{}, errors.New("timestamp")
		}
		f, err := strconv.ParseFloat(string(ts), 64)
		if err != nil {
			return point{}, err
		}
		ms := math.Round(f * 1000)
		if n, err := strconv.ParseInt(string(ts), 10, 64); err == nil && n >= 0 && n < 1e15 {
			return pointValue(n*1000, pair[1]) // whole seconds: exact

		}
		if math.Abs(ms) >= 1<<63 {
			return point{}, errors.New("timestamp out of range")
		}
		return pointValue(int64(ms), pair[1])
	}
	err := orderedObject(body, func(k string, v json.RawMessage) error {
		var err error
		switch k {
		case "status":
			resp.Status, err = str(v)
		case "errorType":
			resp.ErrorType, err = str(v)
		case "error":
			resp.Error, err = str(v)
		case "data":
			if string(v) == "null" {
				return nil
			}
			err = orderedObject(v, func(k string, v json.RawMessage) error {
				switch k {
				case "resultType":
					var err error
					resp.ResultType, err = str(v)
					return err
				case "result":
					if string(v) == "null" {
						return nil
					}
					var items []json.RawMessage
					if err := json.Unmarshal(v, &items); err != nil || items == nil {
						return errors.New("result is not a list")
					}
					for _, it := range items {
						var s refSeries
						err := orderedObject(it, func(k string, v json.RawMessage) error {
							switch k {
							case "metric":
								return orderedObject(v, func(k string, v json.RawMessage) error {
									if k != hostLabel {
										return nil
									}
									if len(v) == 0 || v[0] != '"' {
										return errors.New("host label is not a string")
									}
									s.hasHost = true
									return json.Unmarshal(v, &s.host)
								})
							case "value":
								p, err := pointOf(v)
								s.points = append(s.points, p)
								return err
							case "values":
								var list []json.RawMessage
								if err := json.Unmarshal(v, &list); err != nil || list == nil {
									return errors.New("values is not a list")
								}
								for _, raw := range list {
									p, err := pointOf(raw)
									if err != nil {
										return err
									}
									s.points = append(s.points, p)
								}
							}
							return nil
						})
						if err != nil {
							return err
						}
						out = append(out, s)
					}
				}
				return nil
			})
		}
		return err
	})
	return resp, out, err
}

// pointValue is a point at ms whose value is the JSON raw: a string or a
// number token, parsed as Prometheus prints values (NaN, +Inf included).
func pointValue(ms int64, raw json.RawMessage) (point, error) {
	tok := string(raw)
	if len(tok) > 0 && tok[0] == '"' {
		if err := json.Unmarshal(raw, &tok); err != nil {
			return point{}, err
		}
	}
	v, err := strconv.ParseFloat(tok, 64)
	if err != nil {
		return point{}, err
	}
	return point{T: ms, V: v}, nil
}

// orderedObject calls fn for each key of the JSON object raw, in order.
func orderedObject(raw []byte, fn func(key string, v json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("not an object")
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if err := fn(k.(string), v); err != nil {
			return err
		}
	}
	return nil
}

// FuzzDecodeResponse: on any body the decoder returns, never panics; on a
// body that is valid JSON (and UTF-8) it agrees with encoding/json on whether the
// response is well-formed, and on every field and series it carries.
func FuzzDecodeResponse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		`{"status":"success","data":{"result":[{"metric":{"instance":"web-\"1\"\u00e9"},"values":[[1704110460.123,"NaN"],[-1.5,"+Inf"],[2,"1e-3"]]}],"resultType":"matrix"}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"],"value":[3,"4"]}]}}`,
		`{"status":"error","errorType":"bad_data","error":"boom","data":null}`,
		`{"data":{"result":[{"metric":{"instance":"a"},"value":[99999999999999999,"1"]}]}}`,
		`{"data":{"result":null}}`, `[]`, `{"status":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got []refSeries
		resp, err := decodeResponse(body, "instance", func(host []byte, hasHost bool, labels []byte, pts []point) error {
			_ = compactLabels(labels)
			got = append(got, refSeries{string(host), hasHost, slices.Clone(pts)})
			return nil
		})
		if !json.Valid(body) || !utf8.Valid(body) {
			// The scanner may be lenient about what is not JSON, and
			// keeps invalid UTF-8 as it is where encoding/json writes
			// U+FFFD: such a label value matches no host either way.
			return
		}
		wantResp, want, wantErr := refDecode(body, "instance")
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeResponse error %v, encoding/json reference error %v, on %q", err, wantErr, body)
		}
		if err != nil {
			return
		}
		if resp != wantResp {
			t.Fatalf("response %+v, reference %+v, on %q", resp, wantResp, body)
		}
		same := slices.EqualFunc(got, want, func(a, b refSeries) bool {
			return a.host == b.host && a.hasHost == b.hasHost && slices.EqualFunc(a.points, b.points, func(p, q point) bool {
				return p.T == q.T && (p.V == q.V || math.IsNaN(p.V) && math.IsNaN(q.V))
			})
		})
		if !same {
			t.Fatalf("series %+v, reference %+v, on %q", got, want, body)
		}
	})
}

// FuzzReadRecording: any bytes read as a recording give a recording or an
// error naming the line, never a panic; a recording read replays.
func FuzzReadRecording(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/recordings/*.jsonl")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
			f.Add(data)
		}
	}
	for _, s := range []string{
		`{"metric":{"__name__":"latency_p95","instance":"web-1"},"values":[0.21,null,"NaN","Infinity"],"timestamps":[1700000000000,1700000015000,1700000030000,1700000045000]}`,
		`{"metric":{"__name__":"x","instance":"a"},"values":[1],"timestamps":[1,2]}`,
		"{\"metric\":{\"__name__\":\"x\",\"host\":\"a\"},\"values\":[1,2],\"timestamps\":[2,2]}\n{\"metric\":{\"__name__\":\"x\",\"host\":\"a\"},\"values\":[3],\"timestamps\":[2]}",
		"\x1f\x8b", `{"metric":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ReadRecording(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, s := range rec.Series {
			if len(s.Timestamps) != len(s.Values) {
				t.Fatalf("series %v: %d timestamps, %d values", s.Labels, len(s.Timestamps), len(s.Values))
			}
			if !slices.IsSorted(s.Timestamps) {
				t.Fatalf("series %v: timestamps not sorted", s.Labels)
			}
		}
		names, hosts := rec.Names(), rec.Hosts()
		first, last := rec.Span()
		if len(names) == 0 || len(hosts) == 0 || last.Sub(first) > 48*time.Hour {
			return
		}
		replay, err := NewReplay(rec, ReplayOptions{Lookback: time.Minute})
		if err != nil {
			return
		}
		out := make([]float64, len(hosts))
		q := ports.Query{Name: names[0], Expr: names[0]}
		_ = replay.Instant(t.Context(), q, hosts, last, out)
		_, _ = replay.Range(t.Context(), q, hosts, first, last, time.Minute)
	})
}

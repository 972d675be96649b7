package authgate

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// stdDecode is what jsonSerializer.Deserialize did before jsonReader, and
// still does when the reader gives up.
func stdDecode(b []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(dst)
}

// jsonReaderSeeds are inputs for the reader's tests: what authgate writes,
// and what it must not take for it.
var jsonReaderSeeds = []string{
	`{"v":1,"i":"sid","p":"corp","c":1700000000,"e":1700000300,"rt":"rt","cl":{"sub":"u","groups":["a","b"]}}`,
	`{"v":1,"i":"s","p":"corp","c":1,"cl":{"name":"Zo\u00eb \u003cx\u003e \u0026 \"q\" \\ \/ \b\f\n\r\t \u2028 \ud83d\ude00 \ud800"}}`,
	`{"v":1,"i":"s","p":"corp","c":1,"cl":{"name":"Zoë 😀","n":-1.5e+3,"z":0,"f":0.25,"big":123456789012345678901234567890,"t":true,"x":false,"nil":null}}`,
	`{"v":1,"i":"s","p":"corp","c":1,"cl":{"a":{"b":{"c":[[],{},[1,[2,{"d":null}]]]}}}}`,
	` { "v" : 1 , "cl" : { } } trailing`,
	`{"v":1,"cl":{"k":1,"k":2}}`,
	`{"v":1,"v":2}`,
	`{"V":1}`,
	`{"unknown":1}`,
	`{"v":1.0}`,
	`{"v":-0}`,
	`{"c":9223372036854775807,"e":-9223372036854775808}`,
	`{"c":9223372036854775808}`,
	`{"v":01}`,
	`{"i":null}`,
	`{"cl":null}`,
	`{"cl":[]}`,
	`{"i":1}`,
	`{"i":"a` + "\x01" + `b"}`,
	`{"i":"a` + "\xff" + `b"}`,
	`{"i":"\u00"}`,
	`{"cl":{"a":1,}}`,
	`{"cl":{"a":[1,]}}`,
	`{"cl":{"a":tru}}`,
	`{"cl":{"a":-}}`,
	`{"cl":{"a":1e}}`,
	`{"cl":{"a":.5}}`,
	`{"cl":{"\u0061":"b","a\"b":"c"}}`,
	`{"kg":"print","at":"at","it":"it"}`,
	`{"is":"i","ci":"c","ia":["a","b"],"iz":2,"ua":1700000000,"ti":1700000001}`,
	`{"ia":[]}`,
	`{"ia":null}`,
	`{"ia":["a",1]}`,
	`{"ia":"a"}`,
	`{"iz":1.5}`,
	`null`,
	`[]`,
	``,
	`{`,
	`{"cl":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`,
	`{"cl":{"a":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}}`,
}

// TestJSONReaderMatchesEncodingJSON: every input the reader takes decodes
// as encoding/json decodes it, and authgate's own sessions are taken.
func TestJSONReaderMatchesEncodingJSON(t *testing.T) {
	for _, in := range jsonReaderSeeds {
		checkJSONReader(t, []byte(in))
	}
	for _, s := range []*Session{
		benchLoginSession("alice", 2), benchLoginSession("bob", 300), benchSession("carol", 40),
		sessionTestSession(100),
		{Version: 1, ID: "x", Provider: "p", Created: 1, KeptGroups: "kp", Claims: map[string]any{
			"name": "A & B <c> \"d\" \u2028 é", "n": json.Number("12.5"), "nested": map[string]any{"l": []any{nil, true}}, "empty": []any{},
		}},
	} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var got Session
		if !got.decodeJSON(b) {
			t.Fatalf("the reader gave up on authgate's own session: %s", b)
		}
		checkJSONReader(t, b)
	}
}

func checkJSONReader(t *testing.T, in []byte) {
	t.Helper()
	var fast Session
	if !fast.decodeJSON(in) {
		if !reflect.DeepEqual(fast, Session{}) {
			t.Errorf("decodeJSON(%q) gave up but changed the session: %+v", in, fast)
		}
	} else {
		var std Session
		if err := stdDecode(in, &std); err != nil {
			t.Errorf("decodeJSON took %q, which encoding/json refuses: %v", in, err)
		} else if !reflect.DeepEqual(fast, std) {
			t.Errorf("decodeJSON(%q) =\n%#v\nencoding/json:\n%#v", in, fast, std)
		}
	}
	// Any value, as claims hold them: inside an array, where what
	// follows a value matters.
	in = append(append([]byte("["), in...), ']')
	r := newJSONReader(in)
	v, ok := r.value()
	if !ok {
		return
	}
	var std any
	if err := stdDecode(in, &std); err != nil {
		t.Errorf("value() took %q, which encoding/json refuses: %v", in, err)
	} else if !reflect.DeepEqual(v, std) {
		t.Errorf("value(%q) = %#v, encoding/json: %#v", in, v, std)
	}
}

func FuzzJSONReader(f *testing.F) {
	for _, s := range jsonReaderSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []*Session{benchLoginSession("alice", 2), benchSession("carol", 3)} {
		b, _ := json.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkJSONReader(t, in) })
}

// TestDecodeJSONKnowsEverySessionField: a session with every field set is
// read by decodeJSON, not handed to encoding/json. A new Session field
// must be added to decodeJSON (else every session carrying it is decoded
// the slow way).
func TestDecodeJSONKnowsEverySessionField(t *testing.T) {
	var s Session
	v := reflect.ValueOf(&s).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x" + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a", "b"}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]any{"sub": "u"}))
		default:
			t.Fatalf("Session.%s: a %s, which this test does not fill", v.Type().Field(i).Name, f.Kind())
		}
	}
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	var got Session
	if !got.decodeJSON(b) {
		t.Fatalf("decodeJSON gave up on a session with every field set (a field it does not know?): %s", b)
	}
	checkJSONReader(t, b)
	if !reflect.DeepEqual(got, s) {
		t.Errorf("decodeJSON = %+v, want %+v", got, s)
	}
}

package admin

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
)

// TestStatsJSONFields keeps StatsJSON in step with fraud.Stats.
func TestStatsJSONFields(t *testing.T) {
	st := reflect.TypeFor[fraud.Stats]()
	js := reflect.TypeFor[StatsJSON]()
	for i := range st.NumField() {
		name := st.Field(i).Name
		f, ok := js.FieldByName(name)
		if !ok {
			t.Errorf("StatsJSON lacks fraud.Stats.%s", name)
			continue
		}
		if tag := f.Tag.Get("json"); tag == "" || strings.ToLower(tag) != tag {
			t.Errorf("StatsJSON.%s has json tag %q, want snake_case", name, tag)
		}
	}
	// Every field is copied: set each to a distinct value and compare.
	var s fraud.Stats
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		switch v.Field(i).Kind() {
		case reflect.Int:
			v.Field(i).SetInt(int64(i + 1))
		case reflect.Uint64:
			v.Field(i).SetUint(uint64(i + 1))
		}
	}
	out := reflect.ValueOf(NewStatsJSON(s, 99))
	for i := range v.NumField() {
		name := st.Field(i).Name
		if got := out.FieldByName(name); got.IsValid() && got.Interface() != v.Field(i).Interface() {
			t.Errorf("StatsJSON.%s = %v, want %v", name, got, v.Field(i))
		}
	}
	if NewStatsJSON(s, 99).EventsDroppedFollowers != 99 {
		t.Error("events_dropped_followers not copied")
	}
}

func TestEntryJSON(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	auto := store.Entry{List: store.Blacklist, Prefix: netip.MustParsePrefix("203.0.113.7/32"), Origin: store.Auto,
		Reason: "21 weighted events in 1m", Evidence: []string{"a", "b"}, Created: now, FirstSeen: now.Add(-time.Minute),
		LastSeen: now, Count: 21, Expires: now.Add(time.Hour), Level: 2}
	b, err := json.Marshal(NewEntryJSON(auto))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"list":"blacklist","address":"203.0.113.7","origin":"auto","reason":"21 weighted events in 1m","evidence":["a","b"],"created":"2025-03-01T12:00:00Z","first_seen":"2025-03-01T11:59:00Z","last_seen":"2025-03-01T12:00:00Z","count":21,"expires":"2025-03-01T13:00:00Z","level":2}`
	if string(b) != want {
		t.Fatalf("auto entry\n got %s\nwant %s", b, want)
	}
	manual := store.Entry{List: store.Whitelist, Prefix: netip.MustParsePrefix("198.51.100.0/24"), Origin: store.Manual, Reason: "manual", Created: now}
	b, _ = json.Marshal(NewEntryJSON(manual))
	want = `{"list":"whitelist","address":"198.51.100.0/24","origin":"manual","reason":"manual","created":"2025-03-01T12:00:00Z","count":0,"level":0}`
	if string(b) != want {
		t.Fatalf("manual entry\n got %s\nwant %s", b, want)
	}
}

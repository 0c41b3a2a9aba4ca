// Package geoiptest writes MaxMind-format databases for tests with
// github.com/maxmind/mmdbwriter: small ones from a list of networks and
// records shaped like GeoLite2's (Country, City, ASN, and anycast networks
// that carry only registered_country), and large synthetic ones for
// benchmarks. It is for tests only and does not read databases.
package geoiptest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"
)

// DB describes a database to write.
type DB struct {
	// Type is the metadata's database_type. Empty means "GeoLite2-Country".
	Type string
	// IPVersion is 4 or 6. Zero means 6.
	IPVersion int
	// DisableIPv4Aliasing stops the writer from aliasing ::ffff:0:0/96,
	// 2001::/32 and 2002::/16 to the IPv4 subtree, so that networks can be
	// inserted under those prefixes as data of their own.
	DisableIPv4Aliasing bool
	// Networks are inserted in order; a later one replaces the data of an
	// earlier one where they overlap.
	Networks []Network
}

// Network is one network and its record.
type Network struct {
	Prefix string            // "10.98.1.0/24", "2001:db8::/32"
	Data   mmdbtype.DataType // Country(...), City(...), ASN(...), ...
}

// Country is a GeoLite2-Country record located in iso (and registered
// there too).
func Country(iso string) mmdbtype.Map {
	return mmdbtype.Map{
		"continent":          mmdbtype.Map{"code": mmdbtype.String("EU")},
		"country":            mmdbtype.Map{"iso_code": mmdbtype.String(iso), "geoname_id": mmdbtype.Uint32(1)},
		"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String(iso), "geoname_id": mmdbtype.Uint32(1)},
	}
}

// City is a GeoLite2-City record: the country record plus a city and a
// location.
func City(iso, city string) mmdbtype.Map {
	m := Country(iso)
	m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(city)}}
	m["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(48.85), "longitude": mmdbtype.Float64(2.35)}
	m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String("IDF")}}
	return m
}

// RegisteredOnly is what GeoLite2 stores for anycast networks: a
// registered country and traits, no country.
func RegisteredOnly(iso string) mmdbtype.Map {
	return mmdbtype.Map{
		"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String(iso)},
		"traits":             mmdbtype.Map{"is_anycast": mmdbtype.Bool(true)},
	}
}

// ASN is a GeoLite2-ASN record.
func ASN(num uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(num),
		"autonomous_system_organization": mmdbtype.String(org),
	}
}

// Bytes returns the database file's bytes.
func (d DB) Bytes() ([]byte, error) {
	typ := d.Type
	if typ == "" {
		typ = "GeoLite2-Country"
	}
	ipv := d.IPVersion
	if ipv == 0 {
		ipv = 6
	}
	t, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            typ,
		IPVersion:               ipv,
		RecordSize:              28,
		IncludeReservedNetworks: true, // tests use 10.98.x.0/24, fd98::/64
		DisableIPv4Aliasing:     d.DisableIPv4Aliasing,
		Languages:               []string{"en"},
	})
	if err != nil {
		return nil, err
	}
	for _, n := range d.Networks {
		p, err := netip.ParsePrefix(n.Prefix)
		if err != nil {
			return nil, err
		}
		if err := t.Insert(netipx.PrefixIPNet(p.Masked()), n.Data); err != nil {
			return nil, fmt.Errorf("insert %s: %w", n.Prefix, err)
		}
	}
	var b bytes.Buffer
	if _, err := t.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteFile writes the database to path.
func (d DB) WriteFile(path string) error {
	b, err := d.Bytes()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Code returns the i-th of the 676 two-letter codes AA, AB, ... ZZ; codes
// 0..249 are the synthetic countries (FR is 147, DE is 82).
func Code(i int) string { return string([]byte{byte('A' + i/26%26), byte('A' + i%26)}) }

// SyntheticCountries is how many countries Synthetic spreads networks over.
const SyntheticCountries = 250

// Synthetic returns a Country database shaped like GeoLite2-Country with
// about n networks (60% IPv4, 40% IPv6) spread over SyntheticCountries
// countries, mostly /22 to /24 (IPv4) and /32 to /48 (IPv6), in runs of a
// few networks of the same country, with gaps between them. The same seed
// gives the same database.
func Synthetic(n int, seed uint64) DB {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	d := DB{Type: "GeoLite2-Country"}
	d.Networks = make([]Network, 0, n)
	records := make([]mmdbtype.Map, SyntheticCountries)
	for i := range records {
		records[i] = Country(Code(i))
	}
	// IPv4 from 1.0.0.0 up, IPv6 from 2400:: up, as uint64 cursors
	// (IPv4 in the low 32 bits; IPv6's top 64 bits).
	v4, v6 := uint64(1)<<24, uint64(0x2400)<<48
	country := 0
	for i := range n {
		if i%3 == 0 { // a new run
			country = rng.IntN(SyntheticCountries)
		}
		if i < n*6/10 {
			bits := []int{16, 19, 20, 21, 22, 22, 23, 23, 24, 24, 24, 24, 25, 26, 28}[rng.IntN(15)]
			size := uint64(1) << (32 - bits)
			v4 = (v4 + size - 1) &^ (size - 1)
			if rng.IntN(4) == 0 {
				v4 += size // a gap
			}
			if v4+size > 1<<32 {
				v4 = 1 << 24 // wrap; a later network replaces the data
			}
			d.Networks = append(d.Networks, Network{
				Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v4 >> 24), byte(v4 >> 16), byte(v4 >> 8), byte(v4)}), bits).String(),
				Data:   records[country],
			})
			v4 += size
			continue
		}
		bits := []int{29, 32, 32, 36, 40, 44, 48, 48}[rng.IntN(8)]
		size := uint64(1) << (64 - bits)
		v6 = (v6 + size - 1) &^ (size - 1)
		if rng.IntN(4) == 0 {
			v6 += size
		}
		var a [16]byte
		for j := range 8 {
			a[j] = byte(v6 >> (56 - 8*j))
		}
		d.Networks = append(d.Networks, Network{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), bits).String(), Data: records[country]})
		v6 += size
	}
	return d
}

package geoip

import "errors"

var (
	// ErrNotMMDB: the file is not a MaxMind DB (no metadata marker, or a
	// search tree or metadata that cannot be read).
	ErrNotMMDB = errors.New("geoip: not a MaxMind DB file")
	// ErrNoCountryData: no network of the database has country.iso_code
	// (an ASN, ISP or anonymous-IP database, or an empty one).
	ErrNoCountryData = errors.New("geoip: database has no country data (no record with country.iso_code)")
	// ErrTooLarge: the database's tree has more networks than Select walks.
	ErrTooLarge = errors.New("geoip: database has too many networks")
	// ErrBadCountry: a requested code is not two ASCII letters.
	ErrBadCountry = errors.New("geoip: country code is not two letters (ISO 3166-1 alpha-2)")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("geoip: database closed")
)

// ErrCorrupt: the database's tree or data section cannot be read.
var ErrCorrupt = errors.New("geoip: corrupt MaxMind DB")

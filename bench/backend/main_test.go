package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// exchange writes each chunk of in to a fast-mode handler over loopback TCP,
// half-closes, and returns everything the handler answered before closing.
func exchange(t *testing.T, chunks ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := ln.Accept(); err == nil {
			handleFast(c)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, chunk := range chunks {
		if _, err := c.Write([]byte(chunk)); err != nil {
			break // the handler closed after a bad request
		}
		time.Sleep(time.Millisecond) // let each chunk arrive on its own
	}
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	<-done
	return string(b)
}

func TestHandleFast(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name   string
		chunks []string
		want   []int // statuses, in order
	}{
		{"one", []string{get}, []int{200}},
		{"pipelined", []string{get + get + get}, []int{200, 200, 200}},
		{"split-head", []string{"GET / HT", "TP/1.1\r\nHost: a\r", "\n\r\n"}, []int{200}},
		{"zero-length-body", []string{"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n"}, []int{200}},
		{"body-refused", []string{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", get}, []int{400}},
		{"chunked-refused", []string{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"}, []int{400}},
		{"incomplete", []string{"GET / HTTP/1.1\r\n"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, tc.chunks...)
			br := bufio.NewReader(strings.NewReader(got))
			for i, want := range tc.want {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v (all output %q)", i, err, got)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("response %d: status %d, want %d", i, resp.StatusCode, want)
				}
				if want == 200 && string(body) != "ok" {
					t.Fatalf("response %d: body %q, want ok", i, body)
				}
			}
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Fatalf("unexpected extra output %q", rest)
			}
		})
	}
}

func TestHeadTooLong(t *testing.T) {
	long := "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n"
	if got := exchange(t, long); got != "" {
		t.Fatalf("answered %q to an oversized head, want the connection closed", got)
	}
}

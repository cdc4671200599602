package ticket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nym-go/nym/mixnet/directory"
)

// ContentType is the media type of every binary body of the ticket API.
const ContentType = "application/octet-stream"

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 4 << 10

// StatusError is an authority's refusal: its HTTP status and explanation.
type StatusError struct {
	Op         string
	StatusCode int
	Message    string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Op, e.StatusCode)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
}

// SendReport posts a gateway's signed report to the authority at
// authorityURL (its base URL, as in the network file).
func SendReport(ctx context.Context, httpc *http.Client, authorityURL string, r Report) error {
	body, err := r.AppendBinary(nil)
	if err != nil {
		return err
	}
	_, err = call(ctx, httpc, "send ticket report", http.MethodPost, strings.TrimSuffix(authorityURL, "/")+directory.PathTicketReport, body, 0)
	return err
}

// FetchSpent fetches from the authority at authorityURL the serials
// reported after cursor since (0: from the start).
func FetchSpent(ctx context.Context, httpc *http.Client, authorityURL string, since uint64) (SpentList, error) {
	u := strings.TrimSuffix(authorityURL, "/") + directory.PathTicketSpent + "?since=" + strconv.FormatUint(since, 10)
	body, err := call(ctx, httpc, "fetch spent tickets", http.MethodGet, u, nil, MaxSpentListSize)
	if err != nil {
		return SpentList{}, err
	}
	var l SpentList
	if err := l.UnmarshalBinary(body); err != nil {
		return SpentList{}, fmt.Errorf("fetch spent tickets from %s: %w", authorityURL, err)
	}
	return l, nil
}

// call makes one request and returns the body of a 2xx answer (at most
// limit bytes), or a *StatusError with the authority's explanation.
func call(ctx context.Context, httpc *http.Client, op, method, url string, body []byte, limit int64) ([]byte, error) {
	if httpc == nil {
		httpc = http.DefaultClient
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", ContentType)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &StatusError{Op: op, StatusCode: resp.StatusCode, Message: errorMessage(msg)}
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", op, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", op, limit)
	}
	return out, nil
}

// errorMessage takes the explanation out of an error body: the directory's
// JSON {"error": …}, or the text itself.
func errorMessage(body []byte) string {
	var e directory.ErrorResponse
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return truncate(e.Error, 500)
	}
	return truncate(strings.TrimSpace(string(body)), 500)
}

// refused reports whether err is an authority's refusal of the request
// itself (4xx), as opposed to a failure to get an answer.
func refused(err error) (*StatusError, bool) {
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode/100 == 4 {
		return se, true
	}
	return nil, false
}

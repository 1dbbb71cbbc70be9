// Command send publishes CloudEvents to the ripple gateway with the official Go SDK (sdk-go v2),
// in binary, structured and batch mode, for the gateway's interoperability test.
//
// It reads a plan on stdin: {"url": ..., "token": ..., "requests": [{"mode": "binary"|
// "structured"|"batch", "events": [{"id", "source", "type", "subject", "time", "channel",
// "priority", "data"}]}]} and prints one JSON line per request: {"mode", "status", "body"}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"os"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

type spec struct {
	ID       string          `json:"id"`
	Source   string          `json:"source"`
	Type     string          `json:"type"`
	Subject  string          `json:"subject"`
	Time     string          `json:"time"`
	Channel  string          `json:"channel"`
	Priority int32           `json:"priority"`
	Data     json.RawMessage `json:"data"`
}

type plan struct {
	URL      string `json:"url"`
	Token    string `json:"token"`
	Requests []struct {
		Mode   string `json:"mode"`
		Events []spec `json:"events"`
	} `json:"requests"`
}

type outcome struct {
	Mode   string `json:"mode"`
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func toEvent(s spec) (cloudevents.Event, error) {
	e := cloudevents.NewEvent()
	e.SetID(s.ID)
	e.SetSource(s.Source)
	e.SetType(s.Type)
	e.SetSubject(s.Subject)
	moment, err := time.Parse(time.RFC3339Nano, s.Time)
	if err != nil {
		return e, err
	}
	e.SetTime(moment)
	e.SetExtension("channel", s.Channel)
	e.SetExtension("priority", s.Priority)
	// Data as a user has it: a Go value the SDK encodes as JSON ([]byte would be taken as
	// binary data, data_base64 in structured mode).
	var data map[string]any
	if err := json.Unmarshal(s.Data, &data); err != nil {
		return e, err
	}
	if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
		return e, err
	}
	return e, e.Validate()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "send:", err)
		os.Exit(1)
	}
}

func run() error {
	var p plan
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&p); err != nil {
		return fmt.Errorf("reading the plan on stdin: %w", err)
	}
	auth := "Bearer " + p.Token
	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(p.URL), cehttp.WithHeader("Authorization", auth))
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for _, request := range p.Requests {
		events := make([]cloudevents.Event, 0, len(request.Events))
		for _, s := range request.Events {
			e, err := toEvent(s)
			if err != nil {
				return fmt.Errorf("event %s: %w", s.ID, err)
			}
			events = append(events, e)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		result := outcome{Mode: request.Mode}
		switch request.Mode {
		case "binary", "structured":
			if request.Mode == "structured" {
				ctx = cloudevents.WithEncodingStructured(ctx)
			} else {
				ctx = cloudevents.WithEncodingBinary(ctx)
			}
			res := client.Send(ctx, events[0])
			var httpResult *cehttp.Result
			if cloudevents.ResultAs(res, &httpResult) {
				result.Status = httpResult.StatusCode
				result.Body = fmt.Sprint(res)
			} else if !cloudevents.IsACK(res) {
				cancel()
				return fmt.Errorf("%s request failed: %w", request.Mode, res)
			}
		case "batch":
			httpRequest, err := cehttp.NewHTTPRequestFromEvents(ctx, p.URL, events)
			if err != nil {
				cancel()
				return err
			}
			httpRequest.Header.Set("Authorization", auth)
			response, err := nethttp.DefaultClient.Do(httpRequest)
			if err != nil {
				cancel()
				return err
			}
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			result.Status, result.Body = response.StatusCode, string(body)
		default:
			cancel()
			return fmt.Errorf("unknown mode %q", request.Mode)
		}
		cancel()
		if err := out.Encode(result); err != nil {
			return err
		}
	}
	return nil
}

// Command fn is the test function of package lambdahost: an ordinary
// aws-lambda-go program whose behaviour the tests pick per invocation, by
// payload ({"do": …}), and per process, by FN_INIT or the file FN_INIT_FILE
// names (read at every start, so a test can break and mend a function).
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type request struct {
	Do         string `json:"do"`
	Msg        string `json:"msg"`
	Code       int    `json:"code"`
	Dir        string `json:"dir"`
	N          int    `json:"n"`
	File       string `json:"file"`
	Size       int    `json:"size"`
	IgnoreTerm bool   `json:"ignore_term"`
}

func main() {
	mode := os.Getenv("FN_INIT")
	if name := os.Getenv("FN_INIT_FILE"); name != "" {
		if b, err := os.ReadFile(name); err == nil {
			mode = strings.TrimSpace(string(b))
		}
	}
	switch mode {
	case "fail": // as a custom runtime reports a failed init: post it, exit
		fmt.Fprintln(os.Stderr, "init: failing")
		postInitError()
		os.Exit(1)
	case "exit":
		fmt.Fprintln(os.Stderr, "init: exiting")
		os.Exit(1)
	case "hang": // never asks for work; the host must kill it
		time.Sleep(time.Hour)
	case "badhandler": // aws-lambda-go turns this into an error on every invocation
		lambda.Start(42)
	case "sigterm": // registers with the Extensions API to get SIGTERM at shutdown
		lambda.StartWithOptions(handle, lambda.WithEnableSIGTERM(func() {
			fmt.Println("sigterm: cleaning up")
			os.Exit(0)
		}))
	}
	lambda.Start(handle)
}

func postInitError() {
	url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
	body := `{"errorMessage":"cannot reach the database","errorType":"Runtime.TestInitFailure"}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.TestInitFailure")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "posting init error:", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		fmt.Fprintln(os.Stderr, "posting init error: status", resp.StatusCode)
	}
}

func handle(ctx context.Context, req request) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	switch req.Do {
	case "echo":
		fmt.Println("echo: stdout line")
		fmt.Fprint(os.Stderr, "echo: stderr line\n")
		deadline, _ := ctx.Deadline()
		trace, _ := ctx.Value("x-amzn-trace-id").(string)
		return map[string]any{
			"msg":         req.Msg,
			"request_id":  lc.AwsRequestID,
			"arn":         lc.InvokedFunctionArn,
			"deadline_ms": deadline.UnixMilli(),
			"trace_id":    trace,
			"pid":         os.Getpid(),
		}, nil
	case "error":
		return nil, errors.New(req.Msg)
	case "panic":
		panic(req.Msg)
	case "exit":
		os.Exit(req.Code)
	case "sleep": // until killed
		time.Sleep(time.Hour)
	case "big":
		return strings.Repeat("x", req.Size), nil
	case "env":
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		cwd, _ := os.Getwd()
		return map[string]any{"env": env, "cwd": cwd}, nil
	case "barrier":
		// Returns once n invocations are inside at the same time, which
		// only happens when they run in parallel.
		if err := os.WriteFile(filepath.Join(req.Dir, strconv.Itoa(os.Getpid())), nil, 0o600); err != nil {
			return nil, err
		}
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if entries, _ := os.ReadDir(req.Dir); len(entries) >= req.N {
				return map[string]any{"pid": os.Getpid()}, nil
			}
		}
		return nil, errors.New("barrier: the others never came")
	case "hold":
		// Writes file+".started", then waits for file to exist (or, with
		// no file, forever).
		if req.IgnoreTerm {
			signal.Ignore(syscall.SIGTERM)
		}
		if err := os.WriteFile(req.File+".started", []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return nil, err
		}
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(req.File); err == nil {
				return map[string]any{"pid": os.Getpid()}, nil
			}
		}
		return nil, errors.New("hold: never released")
	case "reader":
		// A raw response whose reader fails half-way: aws-lambda-go reports
		// it in the response's trailers.
		return &failingReader{data: bytes.NewReader([]byte("partial"))}, nil
	}
	return nil, fmt.Errorf("unknown do %q", req.Do)
}

type failingReader struct{ data *bytes.Reader }

// MarshalJSON fails so that aws-lambda-go sends the reader's bytes as they
// are, which it does only for a response that is not JSON.
func (r *failingReader) MarshalJSON() ([]byte, error) { return nil, errors.New("raw bytes") }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data.Len() == 0 {
		return 0, errors.New("reader broke")
	}
	return r.data.Read(p)
}

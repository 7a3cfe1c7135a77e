package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/herald-gw/herald/client"
)

// The API server used to hand notifications to the "notification" AWS
// Lambda, which looked up the user's API Gateway connections and posted to
// each:
//
//	payload, _ := json.Marshal(map[string]any{"user_id": 42, "json": `{"message":"hi"}`})
//	lambdaClient.Invoke(ctx, &lambda.InvokeInput{
//		FunctionName: aws.String("notification"),
//		Payload:      payload,
//	})
//
// With Herald it is one call, whose payload is the value itself rather than
// a JSON string inside JSON, and whose result says whether anyone was
// listening. The browser receives {"message":"hi"} as before.
func Example() {
	// Create one Client at start-up and share it.
	c, err := client.New("https://herald.internal:8443", os.Getenv("HERALD_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	d, err := c.Notify(ctx, "42", map[string]string{"message": "hi"})
	if err != nil {
		log.Printf("notify user 42: %v", err)
		return
	}
	if d.Connections == 0 {
		log.Print("user 42 is offline")
	}
}

// NotifyJSON keeps the Lambda's request shape, for code that already builds
// the payload as a JSON string.
func ExampleClient_NotifyJSON() {
	c, err := client.New("https://herald.internal:8443", os.Getenv("HERALD_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.NotifyJSON(context.Background(), "42", `{"message":"hi"}`); err != nil {
		log.Print(err)
	}
}

// Errors from Herald carry its status and error code.
func ExampleError() {
	c, err := client.New("https://herald.internal:8443", os.Getenv("HERALD_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Broadcast(context.Background(), map[string]string{"notice": "maintenance at 22:00"})

	var herr *client.Error
	switch {
	case err == nil:
	case client.IsCode(err, client.CodeUnauthorized):
		log.Fatal("HERALD_API_KEY is wrong")
	case errors.As(err, &herr) && herr.Code == client.CodePayloadTooLarge:
		log.Print("notice too large: ", herr.Message)
	default:
		log.Print(err) // retries exhausted, or the context ended
	}
}

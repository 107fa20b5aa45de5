package main

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// deviceView is a device as the admin API lists it.
type deviceView struct {
	DeviceID      string    `json:"deviceId"`
	Platform      string    `json:"platform"`
	Token         string    `json:"token"`
	RegisteredAt  time.Time `json:"registeredAt"`
	Subscriptions []struct {
		DatasetName   string `json:"datasetName"`
		SentSyncCount int64  `json:"sentSyncCount"`
	} `json:"subscriptions"`
}

// devicesPath is the admin API path of an identity's devices.
func devicesPath(pool, identity string) string {
	return "/admin/v1/identitypools/" + segment(pool) + "/identities/" + segment(identity) + "/devices"
}

// deviceList prints an identity's devices, one line each, with the
// datasets each is subscribed to and the sync count last pushed to it for
// each.
func deviceList(c *cli, v *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, devicesPath(v.pool, v.identity), nil)
	if err != nil {
		return err
	}
	var list struct {
		Devices []deviceView `json:"devices"`
	}
	if done, err := c.decodeAnswer(raw, "a device list", &list); done || err != nil {
		return err
	}
	if len(list.Devices) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no devices registered for identity %s in pool %s\n", v.identity, v.pool)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tPLATFORM\tREGISTERED\tSUBSCRIBED (SYNC COUNT PUSHED)\tTOKEN")
	for _, d := range list.Devices {
		subs := make([]string, 0, len(d.Subscriptions))
		for _, s := range d.Subscriptions {
			sent := "none"
			if s.SentSyncCount > 0 {
				sent = fmt.Sprint(s.SentSyncCount)
			}
			subs = append(subs, fmt.Sprintf("%s (%s)", s.DatasetName, sent))
		}
		if len(subs) == 0 {
			subs = append(subs, "nothing")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.DeviceID, d.Platform, d.RegisteredAt.UTC().Format(time.RFC3339), strings.Join(subs, ", "), d.Token)
	}
	return tw.Flush()
}

// deviceRemove removes a device of an identity with its subscriptions.
func deviceRemove(c *cli, v *cmdFlags) error {
	if err := c.confirm(v, fmt.Sprintf("remove device %s of identity %s with its subscriptions", v.device, v.identity), "the device is kept"); err != nil {
		return err
	}
	raw, err := c.admin(http.MethodDelete, devicesPath(v.pool, v.identity)+"/"+segment(v.device), nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(raw)
	}
	_, err = fmt.Fprintf(c.stdout, "removed device %s of identity %s\n", v.device, v.identity)
	return err
}

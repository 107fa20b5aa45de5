// An app's use of Cognito Identity and Cognito Sync through the AWS SDK for
// JavaScript v3, pointed at pushsyncd as apps point it: the endpoint in the
// clients' configuration, credentials from Cognito Identity.
//
// Two installs of one unauthenticated identity: the phone (APNs) gets its
// identity and credentials with GetId and GetCredentialsForIdentity; the
// tablet (FCM) gets credentials from the credential provider browser apps
// use and sends with fetch, as the SDK does in browsers. A third
// identity, from fromCognitoIdentityPool, tries to read the first one's data.
//
// Input, from the environment:
//
//	PUSHSYNC_ENDPOINT  the API, e.g. http://127.0.0.1:8081
//	POOL_ID            an identity pool that allows unauthenticated identities
//	                   and has push configured
//	APNS_TOKEN         the phone's APNs device token
//	GCM_TOKEN          the tablet's FCM registration token
//
// Output: one JSON object on stdout with what the SDK answered at each step,
// which the Go test checks. An unexpected failure prints {"failed": step,
// "error": …} instead and exits 1.

import {
  CognitoIdentityClient,
  GetCredentialsForIdentityCommand,
  GetIdCommand,
} from "@aws-sdk/client-cognito-identity";
import {
  CognitoSyncClient,
  CognitoSyncServiceException,
  DeleteDatasetCommand,
  DescribeDatasetCommand,
  ListDatasetsCommand,
  ListRecordsCommand,
  RegisterDeviceCommand,
  ResourceConflictException,
  SubscribeToDatasetCommand,
  UnsubscribeFromDatasetCommand,
  UpdateRecordsCommand,
} from "@aws-sdk/client-cognito-sync";
import { fromCognitoIdentity, fromCognitoIdentityPool } from "@aws-sdk/credential-providers";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`app.mjs: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
};
const endpoint = env("PUSHSYNC_ENDPOINT");
const poolId = env("POOL_ID");
const apnsToken = env("APNS_TOKEN");
const gcmToken = env("GCM_TOKEN");
const region = "us-east-1";
// One attempt per call: a retry would hide an answer the SDK did not like.
const clientConfig = { region, endpoint, maxAttempts: 1 };

const out = {};
let current = "start";

// step runs one named step; an unexpected error ends the run, naming it.
async function step(name, fn) {
  current = name;
  out[name] = await fn();
}

// caught runs a call that must fail and describes the error the SDK made
// of the answer.
async function caught(fn) {
  try {
    const res = await fn();
    return { unexpectedSuccess: res };
  } catch (err) {
    return describeError(err);
  }
}

function describeError(err) {
  return {
    name: err?.name,
    message: err?.message,
    status: err?.$metadata?.httpStatusCode,
    requestId: err?.$metadata?.requestId,
    fault: err?.$fault,
    serviceException: err instanceof CognitoSyncServiceException,
    resourceConflict: err instanceof ResourceConflictException,
  };
}

// time is a timestamp as the Go test reads it: milliseconds since the
// epoch, or what the SDK gave instead of a Date.
function time(d) {
  if (d === undefined || d === null) return null;
  if (d instanceof Date && !Number.isNaN(d.getTime())) return d.getTime();
  return `not a Date: ${typeof d} ${JSON.stringify(d)}`;
}

function record(r) {
  return {
    Key: r.Key,
    Value: r.Value ?? null,
    SyncCount: r.SyncCount,
    LastModifiedBy: r.LastModifiedBy ?? null,
    LastModifiedDate: time(r.LastModifiedDate),
    DeviceLastModifiedDate: time(r.DeviceLastModifiedDate),
  };
}

function dataset(d) {
  return {
    IdentityId: d.IdentityId,
    DatasetName: d.DatasetName,
    CreationDate: time(d.CreationDate),
    LastModifiedDate: time(d.LastModifiedDate),
    LastModifiedBy: d.LastModifiedBy ?? null,
    DataStorage: d.DataStorage,
    NumRecords: d.NumRecords,
  };
}

function listing(res) {
  return {
    status: res.$metadata.httpStatusCode,
    requestId: res.$metadata.requestId,
    Records: (res.Records ?? []).map(record),
    Count: res.Count,
    NextToken: res.NextToken ?? null,
    DatasetSyncCount: res.DatasetSyncCount,
    DatasetExists: res.DatasetExists,
    DatasetDeletedAfterRequestedSyncCount: res.DatasetDeletedAfterRequestedSyncCount,
    LastModifiedBy: res.LastModifiedBy ?? null,
    HasSyncSessionToken: typeof res.SyncSessionToken === "string" && res.SyncSessionToken !== "",
  };
}

async function main() {
  const identity = new CognitoIdentityClient(clientConfig);
  let identityId, phoneCreds;

  // The phone's first start: an identity, then credentials for it.
  await step("getId", async () => {
    const res = await identity.send(new GetIdCommand({ IdentityPoolId: poolId }));
    identityId = res.IdentityId;
    return { IdentityId: res.IdentityId, status: res.$metadata.httpStatusCode, requestId: res.$metadata.requestId };
  });
  await step("getCredentialsForIdentity", async () => {
    const res = await identity.send(new GetCredentialsForIdentityCommand({ IdentityId: identityId }));
    const c = res.Credentials ?? {};
    phoneCreds = {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretKey,
      sessionToken: c.SessionToken,
      expiration: c.Expiration,
    };
    return {
      IdentityId: res.IdentityId,
      AccessKeyId: c.AccessKeyId,
      HasSecretKey: typeof c.SecretKey === "string" && c.SecretKey !== "",
      HasSessionToken: typeof c.SessionToken === "string" && c.SessionToken !== "",
      Expiration: time(c.Expiration),
    };
  });

  const phone = new CognitoSyncClient({ ...clientConfig, credentials: phoneCreds });
  // The tablet: another install of the same identity, which it knows,
  // sending with fetch, as the SDK does in browsers.
  const fetchConfig = { ...clientConfig, requestHandler: new FetchHttpHandler() };
  const tablet = new CognitoSyncClient({
    ...fetchConfig,
    credentials: fromCognitoIdentity({ identityId, clientConfig: fetchConfig }),
  });
  const ids = { IdentityPoolId: poolId, IdentityId: identityId };
  const ds = "game.state";

  // A dataset that does not exist yet: no error, an empty listing and a
  // session to write in.
  let token;
  await step("listNew", async () => {
    const res = await phone.send(new ListRecordsCommand({ ...ids, DatasetName: ds, LastSyncCount: 0 }));
    token = res.SyncSessionToken;
    return listing(res);
  });
  await step("updateFirst", async () => {
    const res = await phone.send(new UpdateRecordsCommand({
      ...ids, DatasetName: ds, SyncSessionToken: token,
      RecordPatches: [
        { Op: "replace", Key: "highScore", Value: "100", SyncCount: 0 },
        { Op: "replace", Key: "name", Value: "héllo", SyncCount: 0, DeviceLastModifiedDate: new Date(1700000000123) },
        { Op: "replace", Key: "level", Value: "3", SyncCount: 0 },
      ],
    }));
    return { status: res.$metadata.httpStatusCode, Records: res.Records.map(record) };
  });

  // The tablet syncs, then changes one record and removes another, as a
  // second device id, with the session of its own listing.
  let tabletToken;
  await step("tabletList", async () => {
    const res = await tablet.send(new ListRecordsCommand({ ...ids, DatasetName: ds }));
    tabletToken = res.SyncSessionToken;
    return listing(res);
  });
  await step("updateSecond", async () => {
    const res = await tablet.send(new UpdateRecordsCommand({
      ...ids, DatasetName: ds, SyncSessionToken: tabletToken, DeviceId: "tablet-install-2",
      RecordPatches: [
        { Op: "replace", Key: "highScore", Value: "200", SyncCount: 1 },
        { Op: "remove", Key: "name", Value: "", SyncCount: 1 },
      ],
    }));
    return { status: res.$metadata.httpStatusCode, Records: res.Records.map(record) };
  });

  // The phone still thinks highScore is at 1: its write is refused.
  await step("conflict", () => caught(() => phone.send(new UpdateRecordsCommand({
    ...ids, DatasetName: ds, SyncSessionToken: token,
    RecordPatches: [{ Op: "replace", Key: "highScore", Value: "150", SyncCount: 1 }],
  }))));

  // Since its last sync count, the phone gets the change and the tombstone.
  await step("listSinceFirst", async () => listing(await phone.send(new ListRecordsCommand({ ...ids, DatasetName: ds, LastSyncCount: 1 }))));

  // Five records read two at a time.
  await step("paging", async () => {
    const pds = "paged";
    const first = await phone.send(new ListRecordsCommand({ ...ids, DatasetName: pds }));
    await phone.send(new UpdateRecordsCommand({
      ...ids, DatasetName: pds, SyncSessionToken: first.SyncSessionToken,
      RecordPatches: ["a", "b", "c", "d", "e"].map((k) => ({ Op: "replace", Key: k, Value: k.toUpperCase(), SyncCount: 0 })),
    }));
    const pages = [];
    let next;
    do {
      const res = await phone.send(new ListRecordsCommand({ ...ids, DatasetName: pds, LastSyncCount: 0, MaxResults: 2, NextToken: next }));
      pages.push(listing(res));
      next = res.NextToken;
    } while (next && pages.length < 10);
    return pages;
  });

  await step("listDatasets", async () => {
    const res = await phone.send(new ListDatasetsCommand({ ...ids }));
    return { Count: res.Count, NextToken: res.NextToken ?? null, Datasets: (res.Datasets ?? []).map(dataset) };
  });
  await step("describe", async () => dataset((await tablet.send(new DescribeDatasetCommand({ ...ids, DatasetName: ds }))).Dataset));

  // Push sync: each install registers its device and subscribes to the
  // notes; the tablet's change is pushed to the phone only.
  const notes = "notes";
  let phoneDevice, tabletDevice;
  await step("registerPhone", async () => {
    const res = await phone.send(new RegisterDeviceCommand({ ...ids, Platform: "APNS", Token: apnsToken }));
    phoneDevice = res.DeviceId;
    return { DeviceId: res.DeviceId };
  });
  await step("registerTablet", async () => {
    const res = await tablet.send(new RegisterDeviceCommand({ ...ids, Platform: "GCM", Token: gcmToken }));
    tabletDevice = res.DeviceId;
    return { DeviceId: res.DeviceId };
  });
  await step("subscribe", async () => {
    const a = await phone.send(new SubscribeToDatasetCommand({ ...ids, DatasetName: notes, DeviceId: phoneDevice }));
    const b = await tablet.send(new SubscribeToDatasetCommand({ ...ids, DatasetName: notes, DeviceId: tabletDevice }));
    return [a.$metadata.httpStatusCode, b.$metadata.httpStatusCode];
  });
  await step("updateNotes", async () => {
    const list = await tablet.send(new ListRecordsCommand({ ...ids, DatasetName: notes }));
    const res = await tablet.send(new UpdateRecordsCommand({
      ...ids, DatasetName: notes, SyncSessionToken: list.SyncSessionToken, DeviceId: tabletDevice,
      RecordPatches: [{ Op: "replace", Key: "todo", Value: "milk", SyncCount: 0 }],
    }));
    return { Records: res.Records.map(record) };
  });
  // Then the phone answers: pushed to the tablet only.
  await step("updateNotesFromPhone", async () => {
    const list = await phone.send(new ListRecordsCommand({ ...ids, DatasetName: notes, LastSyncCount: 0 }));
    const res = await phone.send(new UpdateRecordsCommand({
      ...ids, DatasetName: notes, SyncSessionToken: list.SyncSessionToken, DeviceId: phoneDevice,
      RecordPatches: [{ Op: "replace", Key: "todo", Value: "milk, eggs", SyncCount: 1 }],
    }));
    return { Records: res.Records.map(record) };
  });

  // The phone subscribes to its drafts and unsubscribes, twice: the
  // second time there is nothing to unsubscribe.
  await step("unsubscribe", async () => {
    const sub = { ...ids, DatasetName: "drafts", DeviceId: phoneDevice };
    await phone.send(new SubscribeToDatasetCommand(sub));
    const res = await phone.send(new UnsubscribeFromDatasetCommand(sub));
    return { status: res.$metadata.httpStatusCode, again: await caught(() => phone.send(new UnsubscribeFromDatasetCommand(sub))) };
  });

  // Deleting: the deleted dataset comes back, and it is gone after.
  await step("delete", async () => dataset((await phone.send(new DeleteDatasetCommand({ ...ids, DatasetName: ds }))).Dataset));
  await step("describeDeleted", () => caught(() => phone.send(new DescribeDatasetCommand({ ...ids, DatasetName: ds }))));
  await step("listDeleted", async () => listing(await phone.send(new ListRecordsCommand({ ...ids, DatasetName: ds, LastSyncCount: 2 }))));

  // A device whose clock is 30 minutes behind: the first request is
  // refused as expired, the SDK corrects its clock from the answer's Date
  // and its retry goes through.
  await step("clockSkew", async () => {
    const late = new CognitoSyncClient({ ...clientConfig, maxAttempts: 2, credentials: phoneCreds, systemClockOffset: -30 * 60 * 1000 });
    const res = await late.send(new ListRecordsCommand({ ...ids, DatasetName: notes }));
    return { status: res.$metadata.httpStatusCode, attempts: res.$metadata.attempts, Count: res.Count };
  });

  // A ClientContext travels in the signed x-amz-client-context header.
  await step("clientContext", async () => {
    const list = await phone.send(new ListRecordsCommand({ ...ids, DatasetName: "prefs" }));
    const res = await phone.send(new UpdateRecordsCommand({
      ...ids, DatasetName: "prefs", SyncSessionToken: list.SyncSessionToken,
      ClientContext: Buffer.from(JSON.stringify({ client: { app_title: "demo" } })).toString("base64"),
      RecordPatches: [{ Op: "replace", Key: "theme", Value: "dark", SyncCount: 0 }],
    }));
    return { Records: res.Records.map(record) };
  });

  // Errors the SDK must parse.
  await step("badDatasetName", () => caught(() => phone.send(new ListRecordsCommand({ ...ids, DatasetName: "bad name!" }))));
  await step("otherIdentity", async () => {
    const stranger = new CognitoSyncClient({
      ...clientConfig,
      credentials: fromCognitoIdentityPool({ identityPoolId: poolId, clientConfig }),
    });
    const creds = await stranger.config.credentials();
    const err = await caught(() => stranger.send(new ListRecordsCommand({ ...ids, DatasetName: ds })));
    return { IdentityId: creds.identityId, error: err };
  });
}

try {
  await main();
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (err) {
  process.stdout.write(JSON.stringify({ failed: current, error: describeError(err), stack: err?.stack, done: out }) + "\n");
  process.exitCode = 1;
}

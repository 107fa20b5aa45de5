package dispatcher

import "time"

// failureLogEvery is how often the same kind of push failure (app,
// platform, class and reason) is logged: a provider outage fails every push
// for a while, and one line per push would bury everything else. Metrics
// count every one.
const failureLogEvery = 10 * time.Second

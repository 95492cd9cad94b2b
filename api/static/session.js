/* Signing in with an API token and out again. The role decides which controls are shown; the
 * API still checks it on every call. */

import { ApiError, api, forgetToken, rememberToken, useToken } from "./api-client.js";
import { $, state } from "./page.js";
import { refresh, renderLive, startLiveUpdates, stopLiveUpdates } from "./live-updates.js";
import { loadRange } from "./log-range.js";
import { loadAudit, resetAudit } from "./audit.js";
import { startTargets, stopTargets } from "./targets.js";
import { startNotifications, stopNotifications } from "./notifications.js";
import { resetEventLog, showNewest } from "./event-log.js";
import { travelFromAddress } from "./time-travel.js";
import { showTabStatus } from "./tab-status.js";

export function submitSignIn(event) {
  event.preventDefault();
  var token = $("token").value.trim();
  if (!token) {
    $("token-error").textContent = "Enter a token.";
    return;
  }
  signIn(token);
}

export function signIn(token) {
  useToken(token);
  $("token-error").textContent = "";
  return api("/dashboard/whoami").then(function (principal) {
    if (principal.role === "agent") {
      throw new ApiError(403, "An agent token may only send heartbeats: sign in with a " +
                         "viewer or admin token.");
    }
    state.principal = principal;
    rememberToken();
    $("who-name").textContent = principal.name;
    $("who-role").textContent = principal.role;
    $("who").hidden = false;
    $("sign-in").hidden = true;
    $("app").hidden = false;
    document.body.classList.toggle("admin", principal.admin);
    state.live = true;
    return loadRange().then(refresh).then(function () {
      startLiveUpdates(state.view ? state.view.as_of.position : 0);
      startTargets();
      startNotifications();
      showNewest();
      // A past view in the address reads the audit for its own time once it is shown.
      return travelFromAddress().then(function (travelled) {
        if (!travelled) { loadAudit(); }
      });
    });
  }).catch(function (err) {
    forgetToken();
    state.principal = null;
    $("token-error").textContent = err.status === 401 ?
      "This token is not known or was revoked." : err.message;
    $("token").setAttribute("aria-invalid", "true");
    $("token").focus();
  });
}

export function signOut(message) {
  stopLiveUpdates();
  forgetToken();
  state.principal = null;
  state.view = null;
  resetAudit();
  stopTargets();
  stopNotifications();
  resetEventLog();
  showTabStatus(null);
  state.dirty = {};
  document.body.classList.remove("admin", "past");
  $("servers-body").replaceChildren();
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("token").value = "";
  $("token-error").textContent = message || "";
  renderLive();
}

export function tokenRejected(reason) {
  signOut("Your token is no longer accepted (" + reason + "). Sign in again.");
}

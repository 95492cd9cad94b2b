/* The Cluster Management page: fills the server-rendered shell from the v1 API and keeps it
 * live. Plain JavaScript modules served as they are: no build step, no dependency.
 *
 * This entry module only wires the page together: the controls to their handlers, the modules
 * to each other's news, and the clocks.
 */

import { $, state } from "./page.js";
import { onTokenRejected, savedToken } from "./api-client.js";
import { signIn, signOut, submitSignIn, tokenRejected } from "./session.js";
import { onStreamEvent, renderLive, requestRefresh } from "./live-updates.js";
import { filterServers, turnPage, updateAge } from "./servers-table.js";
import { backToLive, slide, submitTime } from "./time-travel.js";
import { followTravelLink, onLogEvent, showEarlier, showLater, showNewest, submitEventFilter }
  from "./event-log.js";
import { noteEdit, saveConfiguration } from "./configuration.js";
import { confirmRemove, openFromTable, reloadOpenHistory } from "./component-dialogs.js";
import { scheduleAudit, updateRunning } from "./audit.js";
import "./availability.js"; // draws and refreshes its own panel
import { clearForm, confirmTargetRemoval, onTargetEvent, saveTarget, targetAction } from
  "./targets.js";
import { cancelSilence, channelAction, onNotificationEvent, silenceAction, silenceFromTable,
  submitSilence } from "./notifications.js";

function tick() {
  if (!state.view) { return; }
  // A quiet cluster sends no event: re-read now and then so the reasons' numbers keep up.
  // An open "Why?" is re-read every second, so its numbers move with the badge beside it.
  var since = Date.now() - Math.max(state.received, state.attempted);
  var reading = document.querySelector("#servers-body details.reasons[open]");
  if (state.live && (since > 15000 || (reading && since > 900))) {
    requestRefresh();
  }
  Array.prototype.forEach.call(document.querySelectorAll(".beat-age"), updateAge);
  if (state.live) {
    Array.prototype.forEach.call(document.querySelectorAll("td.running"), updateRunning);
  }
  renderLive();
}

onTokenRejected(tokenRejected);
onStreamEvent(function (type, event) {
  if (/TimedOut|Recovered|Removed|MonitorResumed/.test(type)) { scheduleAudit(); }
  reloadOpenHistory(event);
  onTargetEvent(type);
  onNotificationEvent(type);
  onLogEvent();
});

// A module runs once the document is parsed: every element is already there.
$("sign-in-form").addEventListener("submit", submitSignIn);
$("sign-out").addEventListener("click", function () { signOut(""); });
$("config-form").addEventListener("submit", saveConfiguration);
$("config-form").addEventListener("input", noteEdit);
$("tt-form").addEventListener("submit", submitTime);
$("tt-live").addEventListener("click", backToLive);
$("tt-slider").addEventListener("input", slide);
$("servers-body").addEventListener("click", openFromTable);
$("confirm-ok").addEventListener("click", confirmRemove);
$("target-form").addEventListener("submit", saveTarget);
$("target-clear").addEventListener("click", clearForm);
$("targets-body").addEventListener("click", targetAction);
$("confirm-target-ok").addEventListener("click", confirmTargetRemoval);
$("servers-body").addEventListener("click", silenceFromTable);
$("channels-body").addEventListener("click", channelAction);
$("silences-body").addEventListener("click", silenceAction);
$("silence-form").addEventListener("submit", submitSilence);
$("silence-cancel").addEventListener("click", cancelSilence);
$("server-filter").addEventListener("input", filterServers);
$("servers-prev").addEventListener("click", function () { turnPage(-1); });
$("servers-next").addEventListener("click", function () { turnPage(1); });
$("eventlog-form").addEventListener("submit", submitEventFilter);
$("eventlog-newest").addEventListener("click", showNewest);
$("eventlog-earlier").addEventListener("click", showEarlier);
$("eventlog-later").addEventListener("click", showLater);
$("eventlog-body").addEventListener("click", followTravelLink);
setInterval(tick, 1000);
// Ongoing outages grow: re-read the audit now and then even when nothing happens.
setInterval(function () { if (state.live && state.view) { scheduleAudit(); } }, 30000);
var saved = savedToken();
if (saved) { signIn(saved); } else { $("token").focus(); }

/* What the parts of the page share: who is signed in, which view is shown, and a few DOM
 * helpers. */

export const state = {
  principal: null,
  live: true,
  at: null,              // Date of the past view
  view: null,
  received: 0,           // Date.now() when the view arrived
  attempted: 0,          // Date.now() of the last read of the live view
  clockOffset: 0,        // server time - client time, from the view's as_of.time
  travelSeq: 0,
  dirty: {}              // configuration fields being edited: live updates leave them alone
};

export function $(id) { return document.getElementById(id); }

export function setText(node, text) { if (node.textContent !== text) { node.textContent = text; } }

export function announce(text) { $("announce").textContent = text; }

export function isAdmin() { return !!(state.principal && state.principal.admin); }
